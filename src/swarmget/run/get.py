"""``swarmget get``: which way one download goes, and going that way.

The CLI builds one ``GetRequest`` from its options and calls ``download``; this module
validates it (``prepare``), decides the route from a few facts (``choose_route``, pure:
what the user asked and whether a node says it runs in the state directory) and runs it:

=========  ===============================================================================
``SWARM``  ``--hub``: this process joins the hub's swarm as a node for this one download
``NODE``   a node runs in ``--state-dir`` (its ``node.json`` is there): hand the download
           to it and follow its progress; when it does not answer or cannot take the
           output path, the download goes ``ALONE``
``RELAY``  ``--relay``: fetched through the relay, pieces checked by hash
``ALONE``  this host's own connections to the origin
=========  ===============================================================================

Start-up time matters for the last: a plain http:// download with no node running must not
import aiohttp (~0.15 s), pydantic or ``run.remote`` (~0.1 s), so every route imports what
it needs when it runs, and the facts are gathered without importing the node's client.
"""

from __future__ import annotations

import enum
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from swarmget.core.digests import parse_checksum_spec
from swarmget.core.errors import DownloadError, UsageError
from swarmget.core.lifecycle import DownloadState, parse_state
from swarmget.core.scheduler import SchedulerConfig
from swarmget.core.urls import parse_hub_urls, validate_url
from swarmget.defaults import DEFAULT_STATE_DIR
from swarmget.engine import (
    DEFAULT_VERIFY_SAMPLE,
    DownloadProgress,
    DownloadResult,
    DownloadSpec,
)
from swarmget.progress import watch, watch_progress
from swarmget.run.local import LocalOptions, open_local_download, parse_headers
from swarmget.run.secrets import swarm_secret

if TYPE_CHECKING:
    from swarmget.progress import Display

__all__ = [
    "GetRequest",
    "PreparedGet",
    "Route",
    "RouteFacts",
    "choose_route",
    "download",
    "facts_of",
    "prepare",
]


@dataclass(frozen=True, kw_only=True)
class GetRequest:
    """What ``swarmget get`` was asked, one field per option (as click typed it; the
    values are checked by ``prepare``)."""

    url: str
    output: Path | None = None
    connections: int = 4
    checksums: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    force: bool = False
    restart_if_changed: bool = False
    source_address: str | None = None  # the local IP to connect from
    fsync: bool = False
    stall_timeout: float = 15.0
    hubs: tuple[str, ...] = ()  # as given: repeated, or comma-separated
    secret_file: str | None = None
    no_node: bool = False
    relay_url: str | None = None
    verify_sample: float = DEFAULT_VERIFY_SAMPLE
    state_dir: Path = DEFAULT_STATE_DIR
    max_size: int | None = None


@dataclass(frozen=True, kw_only=True)
class PreparedGet:
    """A ``GetRequest`` validated: the download, this host's connections, the hubs."""

    request: GetRequest
    spec: DownloadSpec
    options: LocalOptions
    hub_urls: tuple[str, ...]  # empty: no swarm of our own


def prepare(request: GetRequest) -> PreparedGet:
    """Check the request; raises the ``UsageError`` that names what is wrong (a bad URL,
    checksum, header or hub)."""
    spec = DownloadSpec(
        url=validate_url(request.url),
        output=request.output,
        checksums=tuple(parse_checksum_spec(c) for c in request.checksums),
        force=request.force,
        restart_if_changed=request.restart_if_changed,
        scheduler=SchedulerConfig(stall_timeout=request.stall_timeout),
        fsync=request.fsync,
        verify_sample=request.verify_sample,
        max_size=request.max_size,
    )
    options = LocalOptions(
        connections=request.connections,
        headers=parse_headers(request.headers),
        source_address=request.source_address,
    )
    hub_urls = parse_hub_urls(request.hubs)
    return PreparedGet(request=request, spec=spec, options=options, hub_urls=hub_urls)


class Route(enum.Enum):
    """The ways a download can go (see the module docstring)."""

    SWARM = "swarm"
    NODE = "node"
    RELAY = "relay"
    ALONE = "alone"


@dataclass(frozen=True, kw_only=True)
class RouteFacts:
    """What the route depends on."""

    hubs: bool  # --hub named at least one hub
    relay: bool  # --relay was given
    no_node: bool  # --no-node: never hand the download to a running node
    node_file: bool  # a node says it runs in --state-dir (trusted or not: run.remote checks)


def choose_route(facts: RouteFacts) -> Route:
    """The route for these facts: a swarm of our own first; a running node unless told
    not to use one or to go through a relay (the node has its own relay setting); the
    relay; alone."""
    if facts.hubs:
        return Route.SWARM
    if facts.node_file and not facts.no_node and not facts.relay:
        return Route.NODE
    return Route.RELAY if facts.relay else Route.ALONE


def facts_of(prepared: PreparedGet) -> RouteFacts:
    """The facts of ``prepared``; the state directory is looked at only when it matters."""
    request = prepared.request
    asked_for_node = not prepared.hub_urls and not request.no_node and request.relay_url is None
    return RouteFacts(
        hubs=bool(prepared.hub_urls),
        relay=request.relay_url is not None,
        no_node=request.no_node,
        node_file=asked_for_node and _node_file_exists(request.state_dir),
    )


def _node_file_exists(state_dir: Path) -> bool:
    """Whether a node says it runs in ``state_dir``: without one, a download alone does
    not pay for importing the node's client (pydantic and the API's models)."""
    from swarmget.node.statefiles import NODE_FILE

    return os.path.lexists(state_dir / NODE_FILE)


async def download(
    request: GetRequest,
    *,
    display: Display | None,
    on_node_unusable: Callable[[UsageError], None],
) -> DownloadResult:
    """Download what ``request`` asks for, the way ``choose_route`` says, redrawing the
    progress on ``display`` (None: silently). ``on_node_unusable(exc)`` is told why a
    running node was not used (it cannot write the output path); the download then goes
    alone. Raises a ``SwarmgetError`` when the request is bad or the download fails."""
    prepared = prepare(request)
    route = choose_route(facts_of(prepared))
    if route is Route.SWARM:
        return await _in_swarm(prepared, display)
    if route is Route.NODE:
        result = await _via_node(prepared.spec, request.state_dir, display, on_node_unusable)
        if result is not None:
            return result
    elif route is Route.RELAY:
        return await _through_relay(prepared, display)
    async with open_local_download(prepared.spec, prepared.options) as running:
        return await watch_progress(running, display)


async def _through_relay(prepared: PreparedGet, display: Display | None) -> DownloadResult:
    import aiohttp

    from swarmget.core.identity import NodeIdentity
    from swarmget.net.relay_client import RelayClient

    request = prepared.request
    secret = swarm_secret(request.secret_file)
    async with aiohttp.ClientSession() as session:
        # an ephemeral identity: this process is a one-off client of the relay
        relay = RelayClient(
            session, validate_url(request.relay_url or ""), secret, NodeIdentity.generate()
        )
        async with open_local_download(prepared.spec, prepared.options, relay=relay) as running:
            return await watch_progress(running, display)


async def _via_node(
    spec: DownloadSpec,
    state_dir: Path,
    display: Display | None,
    on_node_unusable: Callable[[UsageError], None],
) -> DownloadResult | None:
    """Hand the download to the running node; None when there is none (or it is not usable)."""
    from swarmget.run import remote

    async with remote.open_local_node(state_dir) as api:  # its Unix socket, never TCP
        if api is None or not await api.alive():
            return None
        try:
            output = remote.relative_output(api.node, spec.output)
        except UsageError as exc:
            on_node_unusable(exc)
            return None
        download_id = await api.start(remote.create_request(spec, output))
        latest: list[DownloadProgress] = []
        follow = api.follow(download_id, latest.append)
        data = await watch(follow, lambda: latest[-1] if latest else None, display)
    if parse_state(data["state"]) is not DownloadState.DONE:
        raise remote.error_from_json(data.get("error") or {"message": data["state"]})
    return remote.result_from_json(data)


async def _in_swarm(prepared: PreparedGet, display: Display | None) -> DownloadResult:
    """Join the hub's swarm as a node for the duration of this one download."""
    from swarmget.node.daemon import NodeConfig
    from swarmget.run.node import open_node

    request, spec = prepared.request, prepared.spec
    with tempfile.TemporaryDirectory(prefix="swarmget-get-") as tmp:
        config = NodeConfig(
            secret=swarm_secret(request.secret_file),
            state_dir=Path(tmp),
            download_dir=Path(tmp) / "unused",
            hub_urls=prepared.hub_urls,
            listen_host=request.source_address or "0.0.0.0",
            listen_port=0,
            api_port=0,
            connections=prepared.options.connections,
            stall_timeout=spec.scheduler.stall_timeout,
            relay_url=validate_url(request.relay_url) if request.relay_url else None,
        )
        async with open_node(config) as node:
            await node.wait_registered(5.0)
            record = node.downloads.create(spec)
            assert record.task is not None
            task = record.task

            async def finished() -> None:
                await task

            await watch(finished(), record.progress, display)
        if record.result is None:
            raise record.error or DownloadError("the download did not finish")
        return record.result
