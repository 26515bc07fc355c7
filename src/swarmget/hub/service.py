"""Running the hub: open its store, serve its app, stop cleanly.

* ``open_hub(...)`` is an async context manager: it opens the registry store, serves the hub
  app on ``host:port`` (port 0: any free one) and yields a ``RunningHub`` with the URL it
  listens on; on exit it stops serving and closes the store, in that order.
* ``run_hub(...)`` serves until it is cancelled or the process gets SIGTERM or SIGINT (when
  running in the main thread), then cleans up; once listening it sets the process's garbage
  collector for serving (``net.serving_gc``). ``swarmget hub`` calls it.
* ``python -m swarmget.hub --port 0 --db sqlite+aiosqlite:///hub.db --secret-file F`` runs it
  as a process and prints one JSON line ``{"url": "http://HOST:PORT"}`` once listening.
  The secret comes from ``--secret-file`` or else the ``SWARMGET_SECRET`` variable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from swarmget.core.addresses import IPNetwork, parse_cidrs
from swarmget.core.errors import SwarmgetError, UsageError
from swarmget.core.groups import DEFAULT_PREFIX_BITS, GroupPolicy
from swarmget.defaults import (
    DEFAULT_DB_URL,
    DEFAULT_HUB_PORT,
    DEFAULT_PEERS_LIMIT,
    DEFAULT_TTL,
    SECRET_ENV,
)
from swarmget.hub.app import make_hub_app
from swarmget.hub.store import RegistryStore, open_registry_store
from swarmget.net.looplag import probe_from_env
from swarmget.net.serve import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_PER_ADDRESS,
    ListenLimits,
    open_listener,
)
from swarmget.net.serving_gc import collect_young_forever, tune_for_serving
from swarmget.net.signals import announce_listening, serve_until_signalled
from swarmget.net.signing import load_secret

__all__ = [
    "DEFAULT_DB_URL",
    "DEFAULT_HUB_PORT",
    "SECRET_ENV",
    "RunningHub",
    "main",
    "open_hub",
    "run_hub",
]

#: Seconds in-flight requests get to finish when the hub stops.
SHUTDOWN_TIMEOUT = 2.0
log = logging.getLogger(__name__)
#: What ``--trust-proxy`` (which believed the client-controlled first X-Forwarded-For hop)
#: says now.
TRUST_PROXY_GONE = (
    "--trust-proxy is no longer supported: it believed an X-Forwarded-For any client can "
    "forge. Name your reverse proxies instead: --trusted-proxy CIDR (e.g. --trusted-proxy "
    '127.0.0.1; config: [hub] trusted_proxies = ["10.0.0.2"])'
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningHub:
    url: str
    store: RegistryStore


def _base_url(sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def open_hub(
    *,
    host: str,
    port: int,
    db_url: str,
    secret: bytes,
    ttl: float = DEFAULT_TTL,
    group_prefix: int = DEFAULT_PREFIX_BITS,
    trusted_proxies: tuple[IPNetwork, ...] = (),
    limits: ListenLimits | None = None,
    clock: Callable[[], float] = time.time,
    liveness_in_memory: bool = True,
    group_policy: GroupPolicy | None = None,
    peers_limit: int = DEFAULT_PEERS_LIMIT,
) -> AsyncIterator[RunningHub]:
    """Serve a hub while the block runs (see module doc). Raises ``StorageError`` when the
    database is unusable and ``UsageError`` when ``host:port`` cannot be bound. Connections
    from ``trusted_proxies`` have no per-address cap (they speak for many nodes). Seen request
    nonces are kept in the registry database, shared with any replica."""
    async with open_registry_store(db_url) as store:
        app = make_hub_app(
            store,
            secret,
            ttl=ttl,
            group_prefix=group_prefix,
            trusted_proxies=trusted_proxies,
            clock=clock,
            liveness_in_memory=liveness_in_memory,
            group_policy=group_policy,
            nonces=store,
            nonce_batches=store,
            peers_limit=peers_limit,
            write_stats=store.write_stats,
            lag_probe=probe_from_env(os.environ),
        )
        limits = dataclasses.replace(limits or ListenLimits(), uncounted=trusted_proxies)
        async with open_listener(
            app,
            host,
            port,
            limits=limits,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            option="`swarmget hub --port` ([hub] port)",
        ) as listening:
            yield RunningHub(url=_base_url((listening.host, listening.port)), store=store)


async def run_hub(
    host: str,
    port: int,
    db_url: str,
    secret: bytes,
    ttl: float = DEFAULT_TTL,
    group_prefix: int = DEFAULT_PREFIX_BITS,
    trusted_proxies: tuple[IPNetwork, ...] = (),
    *,
    limits: ListenLimits | None = None,
    group_policy: GroupPolicy | None = None,
    peers_limit: int = DEFAULT_PEERS_LIMIT,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve the hub until cancelled, SIGTERM or SIGINT; ``on_listening(url)`` once bound."""
    server = open_hub(
        host=host,
        port=port,
        db_url=db_url,
        secret=secret,
        ttl=ttl,
        group_prefix=group_prefix,
        trusted_proxies=trusted_proxies,
        limits=limits,
        group_policy=group_policy,
        peers_limit=peers_limit,
    )

    started: list[RunningHub] = []
    collecting: list[asyncio.Task[None]] = []

    def listening(hub: RunningHub) -> None:
        started.append(hub)
        log.info("hub started: listening on %s", hub.url)
        # its start-up done: frozen out of the collector's sight, the collector set for
        # serving (its pauses were the heartbeats' p99: net.serving_gc), and the young
        # generation collected by the clock; process-wide, as run_hub is the process's own
        # serving loop (both entry points call it)
        tune_for_serving()
        collecting.append(asyncio.get_running_loop().create_task(collect_young_forever()))
        if on_listening is not None:
            on_listening(hub.url)

    try:
        await serve_until_signalled(server, listening)
    finally:
        for task in collecting:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if started:  # (a hub that could not start says why, once, where it failed)
            log.info("hub stopped")


# --- python -m swarmget.hub ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m swarmget.hub", description="Run a swarmget hub.")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    p.add_argument("--port", type=int, default=DEFAULT_HUB_PORT, help="0: any free port")
    p.add_argument(
        "--db",
        default=DEFAULT_DB_URL,
        help="SQLAlchemy async database URL; hubs sharing one (PostgreSQL) are replicas",
    )
    p.add_argument("--secret-file", help=f"the swarm secret (default: ${SECRET_ENV})")
    p.add_argument("--ttl", type=float, default=DEFAULT_TTL, help="seconds a node stays listed")
    p.add_argument("--group-prefix", type=int, default=DEFAULT_PREFIX_BITS)
    p.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a reverse proxy whose X-Forwarded-For is believed (repeat, or commas)",
    )
    p.add_argument("--trust-proxy", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--head-timeout", type=float, default=DEFAULT_HEAD_TIMEOUT, metavar="S")
    p.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT, metavar="S")
    p.add_argument("--connections-per-address", type=int, default=DEFAULT_PER_ADDRESS)
    p.add_argument(
        "--group-cidr",
        action="append",
        default=[],
        metavar="NAME=CIDR",
        help="nodes in CIDR may declare group NAME (repeatable); others are refused",
    )
    p.add_argument(
        "--peers-limit",
        type=int,
        default=DEFAULT_PEERS_LIMIT,
        help="peers one answer lists (1-64)",
    )
    return p


def _announce(url: str) -> None:
    announce_listening({"url": url})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.trust_proxy:
            raise UsageError(TRUST_PROXY_GONE)
        limits = ListenLimits(
            head_timeout=args.head_timeout,
            body_timeout=args.body_timeout,
            per_address=args.connections_per_address,
        )
        secret = load_secret(args.secret_file, env_value=os.environ.get(SECRET_ENV))
        asyncio.run(
            run_hub(
                args.host,
                args.port,
                args.db,
                secret,
                args.ttl,
                args.group_prefix,
                parse_cidrs(args.trusted_proxy),
                limits=limits,
                group_policy=GroupPolicy.parse(args.group_cidr),
                peers_limit=args.peers_limit,
                on_listening=_announce,
            )
        )
    except (SwarmgetError, ValueError) as exc:
        print(f"swarmget hub: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, SwarmgetError) and not isinstance(exc, UsageError) else 2
    return 0
