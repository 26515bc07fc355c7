"""SQL database plumbing shared by the hub's registry and the relay's cache index.

One place makes a SQLAlchemy async engine from a URL, so that every store of the project
opens its database the same way: SQLite gets WAL (readers never block the writer), a busy
timeout and ``synchronous=NORMAL`` on every connection; a database server gets a connect
timeout (asyncpg) and a liveness check of pooled connections. Layer: beside ``storage``
(it builds on ``core`` only); ``hub`` and ``relay`` import it, never each other.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["DB_CONNECT_TIMEOUT", "SQLITE_BUSY_TIMEOUT_MS", "create_db_engine"]

#: Milliseconds a SQLite connection waits for another writer before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000
#: Seconds to wait for a connection to a database server (asyncpg) before failing.
DB_CONNECT_TIMEOUT = 5.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL so readers do not block the writer; wait for a busy writer instead of failing."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_db_engine(url: str) -> AsyncEngine:
    """An engine for ``url``: SQLite gets its pragmas; a database server gets a connect
    timeout (asyncpg) and a liveness check of pooled connections, so that a restarted server
    costs no failed request."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = {"timeout": DB_CONNECT_TIMEOUT} if parsed.get_driver_name() == "asyncpg" else {}
    return create_async_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
