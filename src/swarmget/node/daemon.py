"""The node daemon: wiring of the peer API, the local user API, hub membership and downloads.

``open_node(config)`` starts everything and yields a ``Node``; leaving the block stops it in
order: stop accepting downloads and streams, cancel what runs (part files keep their
checkpoints), leave the hub, close the servers and sessions. The web portal sits above the
node: ``swarmget.run.node`` plugs it in (``open_node(config, pages=...)``) and runs a node
until SIGTERM/SIGINT for ``swarmget node``.

Outgoing connections: the node's own origin fetches and its helper fetches use
``config.source_address`` (default: the peer API's listen address) as their source, so that
nodes on 127.0.0.2, .3 ... are separate clients to a per-IP-capped origin. Helper fetches go
through the SSRF guard (``config.origin_policy``); a node's own downloads were asked for by
its local user and are not restricted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from swarmget import __version__
from swarmget.core.addresses import AddressPolicy
from swarmget.core.byte_sources import SourceKind
from swarmget.core.errors import UsageError
from swarmget.core.identity import NodeIdentity
from swarmget.defaults import DEFAULT_CACHE_BUDGET
from swarmget.net.auth import wait_for_next_second
from swarmget.net.content_hub import ContentHubClient
from swarmget.net.guard import make_guarded_connector
from swarmget.net.hub_client import HubApi, HubPool, Registration, hub_connector
from swarmget.net.looplag import LoopLagProbe, probe_from_env
from swarmget.net.membership import MembershipState, run_membership
from swarmget.net.metrics import metrics_handler
from swarmget.net.origin import OriginClient
from swarmget.net.relay_client import RelayClient
from swarmget.net.replica_watch import watch_replicas
from swarmget.net.serve import ListenLimits, open_listener
from swarmget.node.announcer import HoldingsAnnouncer
from swarmget.node.content_adapters import (
    LanHolders,
    OutputSharing,
    group_sharing,
    open_sharing,
    sharing_status,
)
from swarmget.node.daily import Counts, DailyBytes, flush_daily
from swarmget.node.downloads import DownloadManager, SwarmContext
from swarmget.node.fleet import FleetEntry, fleet_fn, node_summary
from swarmget.node.helper import ChunkFilter, HelperLimits, HelperService, make_peer_app
from swarmget.node.history import DownloadHistory
from swarmget.node.holder import HolderService, add_holder_routes
from swarmget.node.holdings import HoldingsRegistry
from swarmget.node.hub_standing import membership_json
from swarmget.node.journal import DownloadJournal
from swarmget.node.keyfile import load_node_identity
from swarmget.node.metrics import NodeCollector
from swarmget.node.quota import DailyQuota
from swarmget.node.settings import ConfiguredSettings, RuntimeSettings
from swarmget.node.share_cache import ShareCache
from swarmget.node.statefiles import (
    API_SOCKET,
    bind_api_socket,
    new_api_token,
    open_private_dir,
    remove_quietly,
)
from swarmget.node.user_api import METRICS_PATH, UserApi, make_user_app

#: Seconds helper streams in flight get to finish when the node stops.
SHUTDOWN_GRACE = 5.0


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    secret: bytes
    state_dir: Path
    download_dir: Path
    # the node id is the fingerprint of the node key (state_dir/node-key, made at first
    # start); given, it must be that id (a check that the right state dir is in use)
    node_id: str | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    api_host: str = "127.0.0.1"
    api_port: int = 0
    hub_urls: tuple[str, ...] = ()  # hubs sharing one registry, tried in this order
    hub_url: str | None = None  # one hub (older callers): tried before ``hub_urls``
    spread_hubs: bool = False  # start on the hub our id's hash picks (replicas share load)
    group: str | None = None
    slots: int = 3
    connections: int = 4
    rate_limit: float | None = None
    daily_quota: int | None = None
    #: bytes served to LAN peers per UTC day (None: unlimited), counted apart from
    #: ``daily_quota``; ``swarmget node`` gives ``--lan-daily-quota``, else the
    #: ``--daily-quota`` figure (``config.NodeSettings.lan_allowance``)
    lan_daily_quota: int | None = None
    origin_policy: AddressPolicy = field(default_factory=AddressPolicy)
    source_address: str | None = None  # default: listen_host
    heartbeat_interval: float | None = None
    relay_url: str | None = None  # fetch through this relay (pieces checked by its manifest)
    stall_timeout: float = 15.0
    health_timeout: float = 2.0
    max_size: int | None = None  # refuse downloads larger than this (bytes) up front
    listen_limits: ListenLimits = field(default_factory=ListenLimits)  # both APIs
    #: every chunk the helper streams passes through this (only the integrity tests'
    #: lying helper, ``swarmget.testing.evil_node``, gives one)
    chunk_filter: ChunkFilter | None = None
    #: the state directory's group may use the local API on its Unix socket (a node run
    #: by systemd as its own user, driven by the users of that group): see ``statefiles``
    api_group_access: bool = False
    #: fetch once per LAN (#15): bytes of finished downloads kept and served to LAN peers
    #: (``node.share_cache``); 0 disables sharing (nothing served, nothing announced)
    cache_budget: int = DEFAULT_CACHE_BUDGET
    #: files saved outside the node's directories may be shared too when the user asks
    #: (``--share-output``; ``get --share-output`` asks, ``POST /v1/shared-outputs``)
    share_output: bool = False
    #: this node's downloads join the hub's content index (``--share-downloads``; needs a
    #: hub and a cache budget above 0)
    share_downloads: bool = False

    def hubs(self) -> tuple[str, ...]:
        """Every hub to use: ``hub_url`` first, then ``hub_urls``, without repeats."""
        listed = ((self.hub_url,) if self.hub_url else ()) + self.hub_urls
        return tuple(dict.fromkeys(url.rstrip("/") for url in listed))


class UserPages(Protocol):
    """Pages served beside the user API on its server (the web portal, which sits above the
    node and is plugged in by ``swarmget.run.node``): mounted on the user API's application
    before it listens, told its own address once it does."""

    def bind(self, server_url: str) -> None: ...

    def login_url(self) -> str: ...


#: Mounts pages on the user API's application: (application, user API, node id) -> pages.
MountPages = Callable[[web.Application, UserApi, str], UserPages]


@dataclass
class Node:
    node_id: str
    peer_url: str
    api_url: str
    api_token: str
    download_dir: Path
    helper: HelperService
    downloads: DownloadManager
    membership: MembershipState | None = None  # None: the node has no hub
    portal: UserPages | None = None  # the admin portal, on the user API's server
    remote_portal_url: str | None = None  # the portal's own listener, if it has one
    daily: DailyBytes | None = None  # bytes per day, kept across restarts
    #: fetch once per LAN (#15): what this node serves to LAN peers, and its share cache
    holdings: HoldingsRegistry | None = None
    share_cache: ShareCache | None = None
    holder: HolderService | None = None
    announcer: HoldingsAnnouncer | None = None  # kept files in the hub's content index

    async def wait_registered(self, limit: float) -> bool:
        """Wait (at most ``limit`` seconds) until the hub has registered us."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            if self.membership is not None and self.membership.registered is not None:
                return True
            await asyncio.sleep(0.05)
        return False

    def status(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "version": __version__,
            "peer_url": self.peer_url,
            "downloads": {
                "active": self.downloads.active(),
                "total": len(self.downloads.records),
            },
            "helper": self.helper.statistics(),
            "hub": None if self.membership is None else membership_json(self.membership),
            "traffic": None if self.daily is None else self.daily.to_json(),
            "sharing": sharing_status(self.share_cache, self.holder, self.announcer),
        }


@dataclass(frozen=True)
class NodeHooks:
    """What a caller of ``swarmget node`` may plug in besides its options (the click context's
    object: ``swarmget.cli.main([...], obj=NodeHooks(...))``); the integrity tests' lying
    helper is the only user."""

    chunk_filter: ChunkFilter | None = None


def load_identity(state_dir: Path, configured: str | None) -> NodeIdentity:
    """The node's key pair from its state directory (made on first start). Node ids are
    fingerprints of node keys, so a configured id can only be the key's own."""
    identity = load_node_identity(state_dir)
    if configured is not None and configured != identity.node_id:
        raise UsageError(
            f"node id {configured!r} is not this node's: node ids are fingerprints of the "
            f"node key in {state_dir} (this one's is {identity.node_id}); drop --node-id, "
            "or point --state-dir at the node's own state directory"
        )
    return identity


@contextlib.asynccontextmanager
async def _serve(
    app: web.Application,
    host: str,
    port: int,
    limits: ListenLimits,
    unix: socket.socket | None = None,
    *,
    option: str,
) -> AsyncIterator[str]:
    # in-flight requests (helper streams) get SHUTDOWN_GRACE seconds, then are cancelled
    async with open_listener(
        app,
        host,
        port,
        limits=limits,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_GRACE,
        unix=unix,  # the same application on a Unix socket too (the CLI's way in)
        option=option,
    ) as listening:
        yield f"http://{_url_host(host)}:{listening.port}"  # the real port when ``port`` was 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.asynccontextmanager
async def open_node(config: NodeConfig, *, pages: MountPages | None = None) -> AsyncIterator[Node]:
    """Start a node; see the module docstring. ``pages`` (the portal, from ``swarmget.run``)
    are served on the user API's server; without them the node serves its APIs only."""
    # the key first: one others could read is refused (it may be leaked), not tightened
    identity = load_identity(config.state_dir, config.node_id)
    node_id = identity.node_id
    open_private_dir(config.state_dir, group_access=config.api_group_access)  # 0700 (0750)
    config.download_dir.mkdir(parents=True, exist_ok=True)
    source = config.source_address or config.listen_host
    local = (source, 0)
    async with contextlib.AsyncExitStack() as stack:
        # refuses if a node runs there
        api_socket = bind_api_socket(config.state_dir, group_access=config.api_group_access)
        stack.callback(remove_quietly, config.state_dir, API_SOCKET)
        stack.callback(api_socket.close)
        # a new one at every start
        token = new_api_token(config.state_dir, group_access=config.api_group_access)
        own_session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, local_addr=local))
        )
        helper_session = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=make_guarded_connector(config.origin_policy, local_addr=source, limit=0)
            )
        )
        # the hub takes our address from the connection: speak from the peer API's address
        peer_session = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, local_addr=(config.listen_host, 0))
            )
        )
        quota = None
        if config.daily_quota is not None:
            quota = DailyQuota(config.state_dir / "quota.json", config.daily_quota, clock=time.time)
        # origin fetches stay on aiohttp (with SO_RCVLOWAT coalescing): behind capped links,
        # many slow streams cost less there than through net.rawhttp's reading threads
        # (measured: bench/README.md, "The raw range client")
        helper = HelperService(
            OriginClient(helper_session),
            HelperLimits(slots=config.slots, rate_limit=config.rate_limit),
            quota=quota,
            chunk_filter=config.chunk_filter,
        )
        # values changed at run time (the portal's settings) win over the config file's
        settings = RuntimeSettings(config.state_dir, _configured(config), helper)
        stack.callback(_save_quota, helper)  # whichever quota is in force then
        started: list[Node] = []  # the node, once made (the peer API answers before)

        def summary() -> Any:
            node = started[0] if started else None
            registered = None if node is None or not config.hubs() else _registered(node)
            saved = None if node is None or node.daily is None else node.daily.group_saved_today()
            return node_summary(
                node_id,
                helper,
                node.downloads if node else None,
                registered,
                group_saved_today=saved,
            )

        peer_app = make_peer_app(helper, config.secret, node_id, summary)
        holdings, share_cache, holder = open_sharing(
            config.state_dir,
            config.download_dir,
            config.cache_budget,
            config.lan_daily_quota,
            outputs=config.share_output,
        )
        stack.callback(share_cache.close)
        if holder.allowance is not None:
            stack.callback(holder.allowance.save)
        add_holder_routes(peer_app, holder)
        await wait_for_next_second()  # requests signed before now are refused: see net.auth
        peer_url = await stack.enter_async_context(
            _serve(
                peer_app,
                config.listen_host,
                config.listen_port,
                config.listen_limits,
                option="`swarmget node --port` ([node] port)",
            )  # fmt: skip
        )
        hub = None
        if config.hubs():
            # its own connections, kept open across heartbeats (``HUB_KEEPALIVE``), from the
            # peer API's address like ``peer_session``'s
            hub_session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=hub_connector((config.listen_host, 0)))
            )
            hub = HubPool(
                hub_session, config.hubs(), config.secret, identity, spread=config.spread_hubs
            )
        history = DownloadHistory(config.state_dir)  # before the task group: closed after it
        stack.callback(history.close)
        after_tasks = stack.enter_context(contextlib.ExitStack())  # runs once the tasks ended
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        group, announcer = None, None
        if config.share_downloads and hub is not None:
            group, announcer = group_sharing(
                ContentHubClient(hub),
                LanHolders(peer_session, config.secret, identity),
                share_cache,
            )
        hub_ready = asyncio.Event() if hub is not None else None  # (set by on_state)
        swarm = SwarmContext(
            identity=identity,
            secret=config.secret,
            peer_session=peer_session,
            hub=hub,
            health_timeout=config.health_timeout,
            relay=None
            if config.relay_url is None
            else RelayClient(peer_session, config.relay_url, config.secret, identity),
            group=group,
            hub_ready=hub_ready,
        )
        manager = DownloadManager(
            tg,
            OriginClient(own_session),
            swarm,
            connections=config.connections,
            journal=DownloadJournal(config.state_dir / "downloads.json"),
            max_size=config.max_size,
            history=history,
        )
        daily = DailyBytes(history, lambda: _counts(manager, helper, holder), clock=time.time)
        after_tasks.callback(daily.flush)  # at shutdown, once the downloads stopped
        flushing = tg.create_task(flush_daily(daily))
        node = Node(
            node_id=node_id,
            peer_url=peer_url,
            api_url="",
            api_token=token,
            download_dir=config.download_dir.resolve(),
            helper=helper,
            downloads=manager,
            daily=daily,
            holdings=holdings,
            share_cache=share_cache,
            holder=holder,
            announcer=announcer,
            # until the first attempt ends, the status says "registering", not "no hub"
            membership=None if hub is None else MembershipState.starting(hub.hub_url),
        )
        started.append(node)

        def own_entry() -> FleetEntry:
            return FleetEntry(node_id=node_id, url=peer_url, summary=summary(), own=True)

        api = UserApi(
            manager,
            token=token,
            download_dir=config.download_dir,
            stall_timeout=config.stall_timeout,
            status=node.status,
            peers=_peers_fn(hub),
            unix_group_access=config.api_group_access,
            settings=settings,
            fleet=fleet_fn(peer_session, hub, config.secret, identity, own_entry),
            share_output=OutputSharing(share_cache, announcer),
        )
        user_app = make_user_app(api)
        lag_probe = _loop_lag_probe()
        probes = () if lag_probe is None else (lag_probe,)
        user_app.router.add_get(
            METRICS_PATH,
            metrics_handler(
                NodeCollector(
                    node_id, manager, helper, daily, holder=holder, share_cache=share_cache
                ),
                *probes,
            ),
        )
        if pages is not None:
            node.portal = pages(user_app, api, node_id)
        node.api_url = await stack.enter_async_context(
            _serve(
                user_app,
                config.api_host,
                config.api_port,
                config.listen_limits,
                unix=api_socket,
                option="`swarmget node --api-port` ([node] api_port; the portal's)",
            )  # fmt: skip
        )
        if node.portal is not None:
            node.portal.bind(node.api_url)
        stop_tasks: list[asyncio.Task[Any]] = [flushing]
        if lag_probe is not None:
            stop_tasks.append(tg.create_task(lag_probe.run()))
        if hub is not None:
            port = int(peer_url.rsplit(":", 1)[1])
            registration = Registration(
                port=port, version=__version__, slots=config.slots, group=config.group,
                wan_rate=int(config.rate_limit) if config.rate_limit else None,
            )  # fmt: skip

            def on_state(state: MembershipState) -> None:
                node.membership = state
                if hub_ready is not None:
                    hub_ready.set()  # (registered or not: downloads may ask the hub now)
                if announcer is not None:
                    announcer.registered(state.registered)

            if announcer is not None:
                stop_tasks.append(tg.create_task(announcer.run()))

            moved = asyncio.Event()  # another replica said ours is gone: heartbeat now
            stop_tasks.append(
                tg.create_task(
                    run_membership(
                        hub,
                        registration,
                        lambda: _heartbeat_stats(helper),
                        interval=config.heartbeat_interval,
                        on_state=on_state,
                        wake=moved,
                    )
                )
            )
            if len(hub.clients) > 1:
                stop_tasks.append(tg.create_task(watch_replicas(hub, moved.set)))
        try:
            manager.resume_journal()  # downloads a previous run was stopped in the middle of
            yield node
        finally:
            # SIGTERM and friends: refuse new streams (503), stop our downloads (their part
            # files keep a checkpoint and the journal keeps them for the next start), leave
            # the hub; streams in flight get SHUTDOWN_GRACE seconds when the server closes.
            helper.draining = True
            manager.shut_down()
            for task in stop_tasks:
                task.cancel()


def _loop_lag_probe() -> LoopLagProbe | None:
    """The event loop lag probe (and stall log), when the environment asks for one
    (``swarmget.net.looplag``)."""
    return probe_from_env(os.environ)


def _counts(manager: DownloadManager, helper: HelperService, holder: HolderService) -> Counts:
    tally = manager.tally
    return Counts(
        origin=tally.origin_bytes,
        peer=tally.peer_bytes,
        served=helper.stats.bytes_served,
        lan_received=tally.by_source[SourceKind.LAN],
        lan_served=holder.stats.lan_bytes_served,
    )


def _heartbeat_stats(helper: HelperService) -> dict[str, Any]:
    stats = helper.statistics()
    stats["quota_left"] = helper.quota.left() if helper.quota is not None else None
    return stats


def _save_quota(helper: HelperService) -> None:
    if helper.quota is not None:
        helper.quota.save()


def _configured(config: NodeConfig) -> ConfiguredSettings:
    rate = None if config.rate_limit is None else int(config.rate_limit)
    return ConfiguredSettings(slots=config.slots, rate_limit=rate, daily_quota=config.daily_quota)


def _registered(node: Node) -> bool:
    return node.membership is not None and node.membership.registered is not None


def _peers_fn(hub: HubApi | None) -> Callable[[], Any]:
    async def peers() -> list[dict[str, Any]]:
        if hub is None:
            return []
        return [p.as_json() for p in await hub.peers()]

    return peers
