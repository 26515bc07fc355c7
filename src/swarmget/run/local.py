"""Running one download in this process, with this host's own connections to the origin.

The service the CLI calls when no node daemon runs: it owns the HTTP session for the
duration of the download and hands the caller the ``Download`` so that it can watch progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from swarmget.core.errors import InvalidHeader, UsageError

if TYPE_CHECKING:  # (imported when a download runs here: a node's route never needs them)
    import aiohttp

    from swarmget.engine import Download, DownloadSpec
    from swarmget.engine.sources import RangeSource
    from swarmget.net.relay_client import RelayClient


@dataclass(frozen=True, kw_only=True)
class LocalOptions:
    connections: int = 4
    headers: Mapping[str, str] = field(default_factory=dict)
    source_address: str | None = None  # bind outgoing connections to this local IP
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    limit_rate: int | None = None  # bytes/s over every range fetched (--limit-rate)
    #: every request through this HTTP proxy (--proxy; aiohttp's client, never the raw one)
    proxy: str | None = None


def parse_headers(values: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["Name: value", ...]`` → a dict; ``InvalidHeader`` names a malformed entry."""
    out: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition(":")
        name = name.strip()
        if not sep or not name or any(c in name for c in " \t\r\n") or "\n" in value:
            raise InvalidHeader(f"header must look like 'Name: value', got {raw!r}")
        out[name] = value.strip()
    return out


def validate_proxy(proxy: str) -> str:
    """``--proxy``: an ``http://`` URL with a host (and maybe credentials and a port), no
    path; ``UsageError`` otherwise. (aiohttp speaks to HTTP proxies; https:// origins go
    through them with CONNECT.)"""
    parts = urlsplit(proxy)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme != "http"
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise UsageError(f"--proxy must look like http://host:port, not {proxy!r}")
    return proxy


@asynccontextmanager
async def open_local_download(
    spec: DownloadSpec, options: LocalOptions, *, relay: RelayClient | None = None
) -> AsyncIterator[Download]:
    """A ``Download`` fetching straight from the origin over ``options.connections``."""
    from swarmget.core.ratelimit import TokenBucket
    from swarmget.engine import Download, OriginSource
    from swarmget.engine.download import FIRST_RANGE
    from swarmget.engine.sources import ThrottledSource
    from swarmget.net.origin import OriginClient
    from swarmget.net.rawhttp import RawHttp

    if options.connections < 1:
        raise ValueError("connections must be >= 1")
    async with contextlib.AsyncExitStack() as stack:
        made: list[aiohttp.ClientSession] = []

        async def session() -> aiohttp.ClientSession:
            """aiohttp's session, made (and aiohttp imported: ~0.15 s) only when a request
            needs it; with the raw client an http:// download never does."""
            if not made:
                import aiohttp

                local_addr = (options.source_address, 0) if options.source_address else None
                connector = aiohttp.TCPConnector(
                    limit=options.connections + 2, local_addr=local_addr, force_close=False
                )
                made.append(aiohttp.ClientSession(connector=connector, proxy=options.proxy))
                stack.push_async_callback(made[0].close)
            return made[0]

        # ranges (and probes) of http:// files read off the socket: net.rawhttp (it speaks
        # to the origin only: through a proxy every request goes by aiohttp)
        raw = None
        if options.proxy is None:
            raw = await stack.enter_async_context(
                RawHttp(
                    local_addr=options.source_address,
                    connect_timeout=options.connect_timeout,
                    read_timeout=options.read_timeout,
                    max_streams=options.connections + 2,
                )
            )
        client = OriginClient(
            session,
            headers=options.headers,
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            raw=raw,
        )
        source: RangeSource = OriginSource(client, options.connections)
        if options.limit_rate:
            loop = asyncio.get_running_loop()
            bucket = TokenBucket(options.limit_rate)
            source = ThrottledSource(source, bucket, clock=loop.time, sleep=asyncio.sleep)
        yield Download(spec, client, sources=[source], relay=relay, first_range=FIRST_RANGE)
