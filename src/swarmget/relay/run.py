"""Running a relay: the cache index, a guarded origin session, the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from swarmget.core.addresses import AddressPolicy
from swarmget.core.errors import StorageError
from swarmget.core.manifest import DEFAULT_PIECE_SIZE
from swarmget.net.auth import wait_for_next_second
from swarmget.net.guard import make_guarded_connector
from swarmget.net.origin import OriginClient
from swarmget.net.serve import ListenLimits, open_listener
from swarmget.net.signals import serve_until_signalled
from swarmget.relay.app import make_relay_app
from swarmget.relay.blobs import PRIVATE_FILE, ServeLimits, private_dir
from swarmget.relay.service import Relay
from swarmget.relay.store import open_cache_index

DB_NAME = "index.db"


@dataclass(frozen=True, kw_only=True)
class RelayConfig:
    secret: bytes
    cache_dir: Path
    budget: int
    db_url: str | None = None  # default: SQLite in the cache directory
    host: str = "127.0.0.1"
    port: int = 0
    piece_size: int = DEFAULT_PIECE_SIZE
    connections: int = 4
    origin_policy: AddressPolicy = field(default_factory=AddressPolicy)
    limits: ServeLimits = field(default_factory=ServeLimits)
    max_size: int | None = None  # refuse to fetch larger files (before writing a byte)
    listen_limits: ListenLimits = field(default_factory=ListenLimits)


@dataclass
class RunningRelay:
    url: str
    relay: Relay


@contextlib.asynccontextmanager
async def open_relay(config: RelayConfig) -> AsyncIterator[RunningRelay]:
    await asyncio.to_thread(private_dir, config.cache_dir)
    db_url = config.db_url or f"sqlite+aiosqlite:///{config.cache_dir / DB_NAME}"
    db_file = _sqlite_file(db_url)
    if db_file is not None:  # it holds the URLs asked for (signed URLs carry credentials)
        await asyncio.to_thread(_private_db_file, db_file.parent, db_file.name)
    connector = make_guarded_connector(config.origin_policy, limit=0)
    async with (
        open_cache_index(db_url) as index,
        aiohttp.ClientSession(connector=connector) as session,
        asyncio.TaskGroup() as tg,
    ):
        relay = Relay(
            index,
            OriginClient(session),
            tg,
            cache_dir=config.cache_dir,
            budget=config.budget,
            piece_size=config.piece_size,
            connections=config.connections,
            limits=config.limits,
            max_size=config.max_size,
        )
        try:
            app = make_relay_app(relay, config.secret)  # its start time bounds signatures
            await wait_for_next_second()  # requests signed before now are refused (net.auth)
            async with open_listener(
                app,
                config.host,
                config.port,
                limits=config.listen_limits,
                handler_cancellation=True,
                option="`swarmget relay --port` ([relay] port)",
            ) as listening:
                host = f"[{config.host}]" if ":" in config.host else config.host
                yield RunningRelay(f"http://{host}:{listening.port}", relay)
        finally:
            for state in list(relay.fetches.values()):
                if state.task is not None:
                    state.task.cancel()


def _sqlite_file(db_url: str) -> Path | None:
    """The file of a SQLite database URL (None: another database, or in memory)."""
    try:
        url = sa.engine.make_url(db_url)
    except sa.exc.ArgumentError:
        return None  # create_db_engine says what is wrong with it
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _private_db_file(cache_dir: Path, name: str) -> None:
    """Create the SQLite index 0600 before SQLite does (it would use 0644; its journals copy
    the database's mode), or make an existing one 0600; blocking. StorageError if it is a
    link, not a regular file, or another user's."""
    dir_fd = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(name, flags, PRIVATE_FILE, dir_fd=dir_fd)
    except OSError as exc:
        raise StorageError(f"relay index {cache_dir / name}: {exc.strerror or exc}") from exc
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise StorageError(f"relay index {cache_dir / name} is not a regular file of this user")
        if stat.S_IMODE(st.st_mode) != PRIVATE_FILE:
            os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


async def run_relay(config: RelayConfig, announce: Callable[[str], None]) -> None:
    """Serve until cancelled, SIGTERM or SIGINT; ``announce(url)`` once listening."""
    await serve_until_signalled(open_relay(config), lambda running: announce(running.url))
