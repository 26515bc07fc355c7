"""Running a relay: the cache index, a guarded origin session, the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from swarmget.core.addresses import AddressPolicy
from swarmget.core.manifest import DEFAULT_PIECE_SIZE
from swarmget.net.auth import wait_for_next_second
from swarmget.net.guard import make_guarded_connector
from swarmget.net.origin import OriginClient
from swarmget.relay.app import make_relay_app
from swarmget.relay.service import Relay
from swarmget.relay.store import open_cache_index


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


@dataclass
class RunningRelay:
    url: str
    relay: Relay


@contextlib.asynccontextmanager
async def open_relay(config: RelayConfig) -> AsyncIterator[RunningRelay]:
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    db_url = config.db_url or f"sqlite+aiosqlite:///{config.cache_dir / 'index.db'}"
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
        )
        runner = web.AppRunner(make_relay_app(relay, config.secret), handler_cancellation=True)
        await runner.setup()
        try:
            await wait_for_next_second()  # requests signed before now are refused (net.auth)
            await web.TCPSite(runner, config.host, config.port).start()
            port = runner.addresses[0][1]
            host = f"[{config.host}]" if ":" in config.host else config.host
            yield RunningRelay(f"http://{host}:{port}", relay)
        finally:
            await runner.cleanup()
            for state in relay.fetches.values():
                if state.task is not None:
                    state.task.cancel()


async def run_relay(config: RelayConfig, announce: Callable[[str], None]) -> None:
    """Serve until cancelled (SIGTERM/SIGINT stop ``asyncio.run``)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_relay(config) as running:
        announce(running.url)
        await stop.wait()
