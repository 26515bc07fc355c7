"""The shared database plumbing (``swarmget.db``): what every store's SQLite connection gets."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from swarmget.db import SQLITE_BUSY_TIMEOUT_MS, create_db_engine


async def test_a_sqlite_engine_sets_wal_and_a_busy_timeout_on_each_connection(
    tmp_path: Path,
) -> None:
    engine = create_db_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with engine.connect() as conn:
            journal = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar()
            busy = (await conn.execute(sa.text("PRAGMA busy_timeout"))).scalar()
            sync = (await conn.execute(sa.text("PRAGMA synchronous"))).scalar()
    finally:
        await engine.dispose()
    assert journal == "wal"
    assert busy == SQLITE_BUSY_TIMEOUT_MS
    assert sync == 1  # NORMAL


async def test_the_hub_and_the_relay_open_their_databases_through_it() -> None:
    from swarmget.hub import store as hub_store
    from swarmget.relay import store as relay_store

    assert hub_store.create_db_engine is create_db_engine
    assert relay_store.create_db_engine is create_db_engine
