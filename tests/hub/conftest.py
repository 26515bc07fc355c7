"""A throw-away PostgreSQL database per test, for the tests of the replicated hub.

``SWARMGET_TEST_PG`` is the URL of a server and role allowed to create databases
(``postgresql+asyncpg://swarmget:swarmget@127.0.0.1:54329/swarmget``, as printed by
``scripts/ci-postgres.sh``, which ``.ci/run`` runs). Without it, tests that need PostgreSQL
are skipped, unless ``SWARMGET_REQUIRE_PG=1`` (set by ``.ci/run``): then they fail.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

PG_ENV = "SWARMGET_TEST_PG"
REQUIRE_ENV = "SWARMGET_REQUIRE_PG"


@asynccontextmanager
async def open_pg_database() -> AsyncIterator[str]:
    """The URL of a new, empty database on the test server, dropped on exit."""
    base = os.environ.get(PG_ENV)
    if not base:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {PG_ENV} is not set")
        pytest.skip(
            f"needs PostgreSQL: set {PG_ENV}=postgresql+asyncpg://USER:PW@HOST:PORT/DB "
            "(bash scripts/ci-postgres.sh starts one and prints it)"
        )
    name = f"swarmget_test_{secrets.token_hex(6)}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        await _create_database(admin, name)
        try:
            yield make_url(base).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


#: SQLSTATE object_in_use: CREATE DATABASE while another session uses the template, as
#: happens when two test workers (pytest-xdist, `make test`) create databases at once
OBJECT_IN_USE = "55006"


async def _create_database(admin: AsyncEngine, name: str) -> None:
    """``CREATE DATABASE name``, tried again (for up to ~10 s) while the template is busy
    with another worker's creation."""
    for attempt in range(40):
        try:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            return
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != OBJECT_IN_USE or attempt == 39:
                raise
        await asyncio.sleep(0.05 + random.random() * 0.2)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with open_pg_database() as url:
        yield url


@pytest.fixture
def pg_database() -> Callable[[], AbstractAsyncContextManager[str]]:
    """``open_pg_database``, for fixtures that need PostgreSQL only for some parameters."""
    return open_pg_database
