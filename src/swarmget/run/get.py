"""``swarmget get``: which way one download goes, and going that way.

The CLI builds one ``GetRequest`` from its options and calls ``download``; this module
validates it (``prepare``), decides the route from a few facts (``choose_route``, pure:
what the user asked and whether a node says it runs in the state directory) and runs it:

=========  ===============================================================================
``SWARM``  ``--hub``: this process downloads with the hub's swarm as a requester only
           (``swarmget.node.requester``: no listener, no registration); when the hub
           cannot help (unreachable, too old, refusing) it says so and downloads alone
``NODE``   a node runs in ``--state-dir`` (its ``node.json`` is there): hand the download
           to it and follow its progress; when it does not answer or cannot take the
           output path, the download goes the next way (``SWARM`` with the configured
           hubs, else ``ALONE``), and says why (``RouteTaken``)
``RELAY``  ``--relay``: fetched through the relay, pieces checked by hash
``SWARM``  no node runs but the config names hubs (``[node] hub``): as with ``--hub``
``ALONE``  this host's own connections to the origin
=========  ===============================================================================

Every way taken is told to ``on_route`` as a ``RouteTaken``: the route, and why when it is
not the one the user set up (a fallback), so that the CLI says it on stderr and in
``--json``. Interrupted (Ctrl-C: the task is cancelled), a download handed to the node is
cancelled there too, unless ``detach`` asks to leave it running.

Start-up time matters for every route: a plain http:// download with no node running must
not import aiohttp (~0.15 s), pydantic or ``run.remote`` (~0.1 s); one handed to the node
must not import the engine's machinery (only ``engine.spec``'s data types), the origin
clients or aiohttp (``tests/integration/test_get_node_route_imports.py``). So every route
imports what it needs when it runs, and the facts are gathered without importing the
node's client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from swarmget.core.digests import parse_checksum_spec
from swarmget.core.errors import DownloadError, SwarmgetError, UsageError
from swarmget.core.lifecycle import DownloadState, parse_state
from swarmget.core.scheduling import SchedulerConfig
from swarmget.core.urls import parse_hub_urls, validate_url
from swarmget.defaults import DEFAULT_STATE_DIR
from swarmget.engine import (
    DEFAULT_VERIFY_SAMPLE,
    DownloadProgress,
    DownloadResult,
    DownloadSpec,
)
from swarmget.run.local import LocalOptions, parse_headers, validate_proxy
from swarmget.run.quiet_gc import held
from swarmget.run.secrets import swarm_secret

if TYPE_CHECKING:
    from swarmget.node.requester import HubReport
    from swarmget.progress import Display
    from swarmget.run.early import EarlyStart

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
    configured_hubs: tuple[str, ...] = ()  # [node] hub: used when no node takes the download
    detach: bool = False  # interrupted, leave the node's download running
    limit_rate: int | None = None  # bytes/s for this process's own range fetches
    proxy: str | None = None  # an HTTP proxy for this process's own requests (--proxy)
    #: the download ``run.early`` handed to the node before the command ran: the node route
    #: takes it if it is the very request it would send (else it is cancelled)
    early: EarlyStart | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class PreparedGet:
    """A ``GetRequest`` validated: the download, this host's connections, the hubs."""

    request: GetRequest
    spec: DownloadSpec
    options: LocalOptions
    hub_urls: tuple[str, ...]  # empty: no swarm of our own
    configured_hub_urls: tuple[str, ...] = ()  # the config's hubs (when no node runs)


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
        limit_rate=request.limit_rate,
        proxy=validate_proxy(request.proxy) if request.proxy else None,
    )
    hub_urls = parse_hub_urls(request.hubs)
    configured = parse_hub_urls(request.configured_hubs)
    return PreparedGet(
        request=request,
        spec=spec,
        options=options,
        hub_urls=hub_urls,
        configured_hub_urls=configured,
    )


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
    configured_hubs: bool = False  # the config file names hubs ([node] hub)


def choose_route(facts: RouteFacts) -> Route:
    """The route for these facts: a swarm of our own first; a running node unless told
    not to use one or to go through a relay (the node has its own relay setting); the
    relay; the configured hubs' swarm (they are the node's setting: not with --no-node);
    alone."""
    if facts.hubs:
        return Route.SWARM
    if facts.node_file and not facts.no_node and not facts.relay:
        return Route.NODE
    if facts.relay:
        return Route.RELAY
    return Route.SWARM if facts.configured_hubs and not facts.no_node else Route.ALONE


@dataclass(frozen=True, kw_only=True)
class RouteTaken:
    """The way a download went, and why (None: the way it was set up to go); ``fallback``
    when the node or the hub the user set up was not used (to be said loudly)."""

    route: Route
    reason: str | None = None
    fallback: bool = False
    download_id: str | None = None  # the node's id for it (``Route.NODE``)
    #: the node already ran this very download (``Route.NODE``): followed, not started;
    #: a Ctrl-C leaves it running
    joined: bool = False
    #: options given that this route does not use (``Route.NODE``: ``ignored_by_node``)
    ignored: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        taken: dict[str, object] = {
            "route": self.route.value,
            "reason": self.reason,
            "fallback": self.fallback,
        }
        if self.joined:
            taken["joined"] = True
        if self.ignored:
            taken["ignored"] = list(self.ignored)
        return taken


#: ``RouteTaken.reason`` when the command follows a download the node already ran.
_JOINED = (
    "the node was already downloading this URL into this file (download {0}): following "
    "it; Ctrl-C leaves it running (`swarmget cancel {0}` stops it)"
)


def facts_of(prepared: PreparedGet) -> RouteFacts:
    """The facts of ``prepared``; the state directory is looked at only when it matters."""
    request = prepared.request
    asked_for_node = not prepared.hub_urls and not request.no_node and request.relay_url is None
    return RouteFacts(
        hubs=bool(prepared.hub_urls),
        relay=request.relay_url is not None,
        no_node=request.no_node,
        node_file=asked_for_node and _node_file_exists(request.state_dir),
        configured_hubs=bool(prepared.configured_hub_urls),
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
    on_route: Callable[[RouteTaken], None],
    on_hub: Callable[[HubReport], None] | None = None,
) -> DownloadResult:
    """Download what ``request`` asks for, the way ``choose_route`` says, redrawing the
    progress on ``display`` (None: silently). ``on_route`` is told the way taken, and why
    when it is a fallback (see the module docstring). ``on_hub(report)`` hears how the hub
    answered, as soon as it did (``SWARM``; ``NODE``: as the node's download recorded it, at
    its end): a report whose ``alone`` is true means the download goes on without helpers
    (``on_route`` then hears a fallback that says so). Raises a ``SwarmgetError`` when the
    request is bad or the download fails."""
    prepared = prepare(request)
    facts = facts_of(prepared)
    route = choose_route(facts)
    if request.limit_rate and route in (Route.NODE, Route.SWARM):
        raise UsageError(
            f"--limit-rate caps this process's own connections, but this download goes to "
            f"the {'node' if route is Route.NODE else 'swarm'} (its rate_limit caps what it "
            "serves): add --no-node (and no --hub) to download here at that rate"
        )
    if request.headers and route is not Route.ALONE:
        raise UsageError(
            f"--header goes on this process's own requests only, but this download goes to "
            f"the {route.value}, which {_FETCHES_ITSELF[route]}: the header would be dropped "
            "(and the file fetched without it); add --no-node (and no --hub or --relay) to "
            "download here with it"
        )
    if request.proxy and route is not Route.ALONE:
        raise UsageError(
            f"--proxy is for this process's own requests, but this download goes to the "
            f"{route.value} (which fetches the origin itself, never through a proxy): add "
            "--no-node (and no --hub or --relay) to download here through the proxy"
        )
    if route is Route.NODE:
        reason, result = await _via_node(prepared, display, on_route, on_hub)
        if result is not None:
            return result
        if prepared.configured_hub_urls:
            return await _in_swarm(prepared, display, on_route, on_hub, fallback=reason)
        alone = f"{reason}: downloading alone"
        on_route(RouteTaken(route=Route.ALONE, reason=alone, fallback=True))
    elif route is Route.SWARM:
        return await _in_swarm(prepared, display, on_route, on_hub)
    elif route is Route.RELAY:
        on_route(RouteTaken(route=Route.RELAY))
        return await _through_relay(prepared, display)
    else:
        on_route(RouteTaken(route=Route.ALONE, reason=_why_alone(request, facts)))
    return await _alone(prepared, display)


#: What each route that is not this process's own does with the origin (for --header).
_FETCHES_ITSELF = {
    Route.NODE: "fetches the origin itself, with its helpers",
    Route.SWARM: "has helpers fetch the origin themselves",
    Route.RELAY: "fetches the origin itself",
}


def ignored_by_node(request: GetRequest) -> tuple[str, ...]:
    """The options given to ``request`` that a download handed to the node does not use
    (the node downloads with its own settings), as the user would type them."""
    defaults = GetRequest(url=request.url)
    ignored = [
        ("-c", request.connections != defaults.connections),
        ("--stall-timeout", request.stall_timeout != defaults.stall_timeout),
        ("--source-address", request.source_address is not None),
        ("--fsync", request.fsync),
    ]
    return tuple(option for option, given in ignored if given)


async def _alone(prepared: PreparedGet, display: Display | None) -> DownloadResult:
    """This host's own connections to the origin."""
    with held():  # (run.quiet_gc)
        from swarmget.progress import watch_progress
        from swarmget.run.local import open_local_download

    async with open_local_download(prepared.spec, prepared.options) as running:
        return await watch_progress(running, display)


def _why_alone(request: GetRequest, facts: RouteFacts) -> str | None:
    """Why a download goes alone when that was the first choice (None: asked to)."""
    if facts.no_node:
        return None
    return f"no node runs in {request.state_dir} and no hub is configured"


async def _through_relay(prepared: PreparedGet, display: Display | None) -> DownloadResult:
    with held():  # (run.quiet_gc)
        import aiohttp

        from swarmget.core.identity import NodeIdentity
        from swarmget.net.relay_client import RelayClient
        from swarmget.progress import watch_progress
        from swarmget.run.local import open_local_download

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
    prepared: PreparedGet,
    display: Display | None,
    on_route: Callable[[RouteTaken], None],
    on_hub: Callable[[HubReport], None] | None = None,
) -> tuple[str, DownloadResult | None]:
    """Hand the download to the running node: its result; or, when the node cannot take
    it, why not (and None). What the node's hub said is told to ``on_hub``; when the node
    downloaded alone because of it, ``on_route`` hears a fallback that says so."""
    with held():  # (run.quiet_gc)
        from swarmget.progress import watch
        from swarmget.run import remote

    spec, state_dir = prepared.spec, prepared.request.state_dir
    async with remote.open_local_node(state_dir) as api:  # its Unix socket, never TCP
        if api is None:
            return f"no node answers in {state_dir} (its socket or token is missing)", None
        early = prepared.request.early
        if early is not None and early.state_dir != state_dir:
            early = None  # (not this node's: it is cancelled when the program ends)
        # a node that took the early download moments ago is not asked again whether it
        # runs: gone since, it is a lost node (as when it dies a moment later), never a
        # reason to download here beside it, into the same file
        if early is None and not await api.alive():
            return f"the node in {state_dir} does not answer", None
        try:
            output = remote.relative_output(api.node, spec.output)
        except UsageError as exc:
            return str(exc), None
        create = remote.create_request(spec, output)
        if early is not None and early.adopt(state_dir, create.as_json()):
            started = remote.Started(early.download_id)
        else:
            if early is not None and early.take_back():  # (it may hold the same output)
                await remote.withdraw(api, early.download_id)
            started = await api.start(create)
        download_id = started.download_id
        joined = _JOINED.format(download_id) if started.joined else None
        taken = RouteTaken(
            route=Route.NODE,
            reason=joined,
            download_id=download_id,
            joined=started.joined,
            ignored=ignored_by_node(prepared.request),
        )
        on_route(taken)
        latest: list[DownloadProgress] = []
        follow = api.follow(download_id, latest.append)
        try:
            data = await watch(follow, lambda: latest[-1] if latest else None, display)
        except asyncio.CancelledError:  # Ctrl-C: the node's download stops too, unless
            if not (prepared.request.detach or started.joined):  # detached, or not ours
                await api.cancel(download_id)
            raise
    try:
        hub, done = remote.hub_from_json(data), parse_state(data["state"]) is DownloadState.DONE
        error = data.get("error") or {"message": data["state"]}
        result = remote.result_from_json(data) if done else remote.error_from_json(error)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise remote.malformed(api.node) from exc
    _tell_hub(hub, taken, on_route, on_hub)
    if isinstance(result, SwarmgetError):
        raise result
    return "", result


def _tell_hub(
    report: HubReport | None,
    taken: RouteTaken,
    on_route: Callable[[RouteTaken], None],
    on_hub: Callable[[HubReport], None] | None,
) -> None:
    """What the node's hub said about its download (``taken``: the way it went); a warning
    when it ran alone for it (the same way, with that reason)."""
    if report is None:
        return
    if on_hub is not None:
        on_hub(report)
    warning = report.warning()
    if warning is not None:
        on_route(dataclasses.replace(taken, reason=warning, fallback=True))


async def _in_swarm(
    prepared: PreparedGet,
    display: Display | None,
    on_route: Callable[[RouteTaken], None],
    on_hub: Callable[[HubReport], None] | None,
    *,
    fallback: str | None = None,
) -> DownloadResult:
    """Download with the hub's swarm as a requester only, for this one download
    (``fallback``: why the running node was not used instead). Without a word from the hub by
    the end, ``on_hub`` hears that it did not answer (``NO_ANSWER``)."""
    with held():  # (run.quiet_gc: ~0.5 s of imports, aiohttp and pydantic among them)
        from swarmget.node.requester import HubOutcome, HubReport, RequesterConfig, open_requester
        from swarmget.progress import watch

    request, spec = prepared.request, prepared.spec
    config = RequesterConfig(
        secret=swarm_secret(request.secret_file),
        hub_urls=prepared.hub_urls or prepared.configured_hub_urls,
        source_address=request.source_address,
        connections=prepared.options.connections,
        relay_url=validate_url(request.relay_url) if request.relay_url else None,
    )
    heard: list[HubReport] = []

    def hear(report: HubReport) -> None:
        heard.append(report)
        if on_hub is not None:
            on_hub(report)
        if report.alone:  # the route changes: said as any fallback is, never silently
            why = f"{report.describe()} (hub {report.hub_url})"
            reason = f"{fallback}; {why}" if fallback else why
            on_route(RouteTaken(route=Route.ALONE, reason=reason, fallback=True))

    on_route(RouteTaken(route=Route.SWARM, reason=fallback, fallback=bool(fallback)))
    interrupted = False
    async with open_requester(config, on_hub=hear) as requester:
        record = requester.downloads.create(spec)
        assert record.task is not None
        task = record.task

        async def finished() -> None:
            # shielded: Ctrl-C cancels this wait, not the download's own handling of a
            # cancel (which would end it as a failure); the requester's exit stops it
            await asyncio.shield(task)

        try:
            await watch(finished(), record.progress, display)
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:  # Ctrl-C: not a failed download (exit 130, not 3)
        raise asyncio.CancelledError
    if not heard:
        hear(HubReport(outcome=HubOutcome.NO_ANSWER, hub_url=config.hub_urls[0]))
    if record.result is None:
        raise record.error or DownloadError("the download did not finish")
    return record.result
