"""Finding the helpers of a download: the hub's live peers, health-checked in parallel.

However many peers the hub lists, a requester health-checks at most
``MAX_HEALTH_CANDIDATES`` of them (``MAX_HEALTH_CHECKS_IN_FLIGHT`` at once, in the hub's
order: best first) and uses at most ``MAX_HELPERS_PER_DOWNLOAD`` helpers, the first that
answer; the rest are ignored. Without a hub, or when the hub cannot answer, a download has
no helpers (it goes on alone on its own origin connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from swarmget.core.errors import HubError
from swarmget.core.identity import NodeIdentity
from swarmget.core.ranges import ByteRange
from swarmget.engine.sharing import GroupOptions
from swarmget.net.hub_client import HubApi
from swarmget.net.peer_client import (
    MAX_HEALTH_CHECKS_IN_FLIGHT,
    MAX_HELPER_SLOTS,
    PeerAddress,
    check_health,
)
from swarmget.net.relay_client import RelayClient
from swarmget.node.hub_report import HubOutcome, HubReport, outcome_of
from swarmget.protocol.hub import MAX_PEERS_PER_ANSWER

__all__ = [
    "HUB_READY_WAIT",
    "MAX_HEALTH_CANDIDATES",
    "MAX_HELPERS_PER_DOWNLOAD",
    "SwarmContext",
    "find_helpers",
    "wait_for_hub",
]

#: the logger this code had inside ``node.downloads``: log filters and readers keep working
log = logging.getLogger("swarmget.node.downloads")

#: Peers of the hub's list a requester health-checks at most, per download.
MAX_HEALTH_CANDIDATES = 64
#: Helpers one download uses at most (besides this node's own origin connections): as many
#: as the hub may list (its ``--peers-limit`` bounds the answer, 32 by default). The
#: scheduler's cost per event does not grow with them (issue #17, bench/README.md
#: "Scheduler at scale"); 64 helpers at the default 3 slots are 192 sockets.
MAX_HELPERS_PER_DOWNLOAD = MAX_PEERS_PER_ANSWER


@dataclass(frozen=True, kw_only=True)
class SwarmContext:
    """What a requester needs to find and use helpers."""

    identity: NodeIdentity  # ours: requests to helpers are signed with it
    secret: bytes
    peer_session: aiohttp.ClientSession
    hub: HubApi | None  # a HubClient, or a HubPool of replicated hubs
    health_timeout: float = 2.0
    relay: RelayClient | None = None
    max_candidates: int = MAX_HEALTH_CANDIDATES
    max_helpers: int = MAX_HELPERS_PER_DOWNLOAD
    max_checks_in_flight: int = MAX_HEALTH_CHECKS_IN_FLIGHT
    #: fetch once per LAN (#15): the content index and holders; None: never share
    group: GroupOptions | None = None
    #: set once the node's first attempt to register with the hub has ended (registered or
    #: not): a download started before that (resumed at the node's start, or asked for at
    #: once) asks the hub for peers only then, not as a stranger it would refuse
    #: (``wait_for_hub``); None: nothing to wait for (no membership: ``get --hub``)
    hub_ready: asyncio.Event | None = None

    @property
    def node_id(self) -> str:
        return self.identity.node_id


#: Seconds a download waits at most for the node's first registration before it asks the
#: hub for peers (it downloads on its own connections meanwhile).
HUB_READY_WAIT = 5.0


async def wait_for_hub(swarm: SwarmContext, limit: float = HUB_READY_WAIT) -> None:
    """Until the node's first registration attempt has ended (``SwarmContext.hub_ready``),
    at most ``limit`` seconds."""
    if swarm.hub_ready is None or swarm.hub_ready.is_set():
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            await swarm.hub_ready.wait()


async def find_helpers(
    swarm: SwarmContext,
    only_helpers: Sequence[str] | None = None,
    on_found: Callable[[PeerAddress], None] | None = None,
    on_hub: Callable[[HubReport], None] | None = None,
    on_listed: Callable[[int], None] | None = None,
    warm_url: str | None = None,
    plan_leads: Callable[[Sequence[str]], Mapping[str, ByteRange]] | None = None,
) -> list[PeerAddress]:
    """The helpers a download uses: the hub's peers (those of ``only_helpers`` when given)
    that answer a health check, within the bounds of the module doc; none without a hub or
    when the hub is unavailable (the node downloads alone). ``on_found`` is called with
    each as soon as it answered, ``on_hub`` with what the hub said (not without a hub),
    ``on_listed`` with the slots of the candidates to be checked (before the checks: what
    the download may expect, issue #14; each capped as a health answer's would be).
    ``warm_url``, the download's URL, is told to the candidates with the health check: a
    helper opens its origin connection before the first range comes (``check_health``);
    ``plan_leads``, called with the ids of the candidates that may be used (before the
    checks), names the range each will be asked first: it is told too, and the helper may
    ask the origin for it at once."""
    hub = swarm.hub
    if hub is None:
        return []
    await wait_for_hub(swarm)
    tell = on_hub or (lambda report: None)
    try:
        # a group may have more live nodes than one answer lists: ask for the chosen ones
        listed = await hub.peers(only_helpers[:MAX_PEERS_PER_ANSWER] if only_helpers else None)
    except HubError as exc:
        log.warning("hub unavailable, downloading alone: %s", exc)
        tell(HubReport(outcome=outcome_of(exc), hub_url=hub.hub_url, error=str(exc)))
        return []
    tell(HubReport(outcome=HubOutcome.ANSWERED, hub_url=hub.hub_url, peers=len(listed)))
    candidates = [
        PeerAddress(node_id=p.node_id, url=p.url, slots=p.slots)
        for p in listed
        if p.node_id != swarm.node_id and (only_helpers is None or p.node_id in only_helpers)
    ]
    checked = candidates[: swarm.max_candidates]
    usable = checked[: swarm.max_helpers]
    if on_listed is not None:
        on_listed(sum(min(p.slots, MAX_HELPER_SLOTS) for p in usable))
    leads = None if plan_leads is None else plan_leads([p.node_id for p in usable])
    return await check_health(
        swarm.peer_session,
        checked,
        swarm.secret,
        swarm.identity,
        health_timeout=swarm.health_timeout,
        max_in_flight=swarm.max_checks_in_flight,
        enough=swarm.max_helpers,
        on_healthy=on_found,
        warm_url=warm_url,
        leads=leads,
    )
