"""The fleet view's data: this node's summary, and every peer's, node to node.

The hub never downloads and is not asked for more than it answers today: the node asks it
for its group's peers (``HubApi.peers``) and then each peer for ``GET /v1/summary`` over the
signed peer API, at most ``MAX_IN_FLIGHT`` at once, each within ``timeout`` seconds; a peer
that does not answer well in time is listed as unreachable (with a short reason) and never
holds the others up. Answers are read up to ``MAX_SUMMARY_BYTES`` and validated strictly
(``protocol.peer.NodeSummary``); a summary naming another node than the hub listed is
refused. Summaries carry counts and rates only (see ``protocol.peer``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from swarmget.core.errors import HubError
from swarmget.core.identity import NodeIdentity
from swarmget.net.hub_client import HubApi
from swarmget.net.peer_client import signed_get
from swarmget.node.download_record import describe
from swarmget.node.downloads import DownloadManager
from swarmget.node.helper import HelperService, helper_summary
from swarmget.protocol.peer import MAX_SUMMARY_BYTES, SUMMARY_PATH, NodeSummary

MAX_IN_FLIGHT = 8  # peers asked at once
SUMMARY_TIMEOUT = 2.0  # seconds a peer gets to answer


@dataclass(frozen=True, kw_only=True)
class FleetEntry:
    """One node of the fleet view: its summary, or why there is none."""

    node_id: str
    url: str
    summary: NodeSummary | None = None
    error: str | None = None  # "unreachable (timed out)", "refused (401)" ...
    own: bool = False


def node_summary(
    node_id: str,
    helper: HelperService,
    manager: DownloadManager | None,
    registered: bool | None,
    *,
    group_saved_today: int | None = None,
) -> NodeSummary:
    """This node's summary: its helper's, with its downloads counted by state and their rate,
    and the origin bytes it saved its group today (``node.daily.DailyBytes``; None: not
    counted)."""
    base = helper_summary(helper, node_id).model_copy(
        update={"hub_registered": registered, "group_saved_today": group_saved_today}
    )
    if manager is None:
        return base
    states = Counter(r.state.value for r in manager.records.values())
    rate = 0.0
    for record in manager.records.values():
        if record.state.active:
            progress = describe(record, events=0).get("progress") or {}
            rate += float(progress.get("rate") or 0.0)
    return base.model_copy(update={"downloads": dict(states), "download_rate": rate})


async def fetch_summary(
    session: aiohttp.ClientSession,
    node_id: str,
    url: str,
    secret: bytes,
    identity: NodeIdentity,
    limit: float,
) -> FleetEntry:
    """One peer's summary over the signed peer API, or the reason there is none."""
    target = f"{url}{SUMMARY_PATH}"
    try:
        status, body = await signed_get(
            session, target, secret, identity, limit=limit, max_bytes=MAX_SUMMARY_BYTES
        )
    except TimeoutError:
        return FleetEntry(node_id=node_id, url=url, error="unreachable (timed out)")
    except (aiohttp.ClientError, OSError):
        return FleetEntry(node_id=node_id, url=url, error="unreachable (no connection)")
    if status != 200:
        return FleetEntry(node_id=node_id, url=url, error=f"refused ({status})")
    try:
        if body is None:
            raise ValueError("too large")
        summary = NodeSummary.model_validate_json(body)
    except (ValueError, RecursionError):  # pydantic's ValidationError is a ValueError
        return FleetEntry(node_id=node_id, url=url, error="answered a malformed summary")
    if summary.node_id != node_id:
        return FleetEntry(node_id=node_id, url=url, error="answered for another node")
    return FleetEntry(node_id=node_id, url=url, summary=summary)


async def gather_summaries(
    fetch: Callable[[str, str], Awaitable[FleetEntry]],
    peers: Sequence[tuple[str, str]],
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> list[FleetEntry]:
    """``fetch(node_id, url)`` for every peer, at most ``max_in_flight`` at once, in order."""
    gate = asyncio.Semaphore(max_in_flight)
    found: dict[int, FleetEntry] = {}

    async def one(index: int, node_id: str, url: str) -> None:
        async with gate:
            found[index] = await fetch(node_id, url)

    async with asyncio.TaskGroup() as tg:
        for index, (node_id, url) in enumerate(peers):
            tg.create_task(one(index, node_id, url))
    return [found[i] for i in sorted(found)]


FleetFn = Callable[[], Awaitable[tuple[list[FleetEntry], str | None]]]


def fleet_fn(
    session: aiohttp.ClientSession,
    hub: HubApi | None,
    secret: bytes,
    identity: NodeIdentity,
    own: Callable[[], FleetEntry],
    *,
    timeout: float = SUMMARY_TIMEOUT,
    hub_timeout: float = 3.0,
) -> FleetFn:
    """The fleet view's source: this node first, then the hub's peers' summaries, and a
    note when the hub could not be asked."""

    async def fleet() -> tuple[list[FleetEntry], str | None]:
        if hub is None:
            return [own()], "this node uses no hub: it has no fleet"
        try:
            async with asyncio.timeout(hub_timeout):
                peers = await hub.peers()
        except (HubError, TimeoutError) as exc:
            return [own()], f"the hub cannot be reached ({exc or 'timed out'})"

        async def fetch(node_id: str, url: str) -> FleetEntry:
            return await fetch_summary(session, node_id, url, secret, identity, timeout)

        listed = sorted((p.node_id, p.url) for p in peers if p.node_id != identity.node_id)
        return [own(), *await gather_summaries(fetch, listed)], None

    return fleet
