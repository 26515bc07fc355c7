"""The portal's fleet page: every node of the group on one page, gathered node to node.

This node asks its hub for the group's peers (as the peers page does) and then each peer for
its summary over the signed peer API (``swarmget.node.fleet``): per node its downloads
(counted by state, and their rate), what it serves (streams, bytes sent today), the origin
bytes it saved its group today (LAN bytes served plus received, UTC day: ``node.daily``; a
dash for an older node, which does not say), its limits and its health. Counts and rates
only: no URL or file name of another machine's user reaches this page. A peer that does not
answer in time shows as unreachable; it never holds the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from swarmget.node.fleet import FleetEntry
from swarmget.protocol.peer import NodeSummary
from swarmget.web.humanize import human_bytes, human_rate
from swarmget.web.live import live_stream
from swarmget.web.site import PORTAL, SESSION, Portal

__all__ = ["fleet_page", "live_fleet"]

FLEET_INTERVAL = 3.0
DASH = "—"


@dataclass(frozen=True, kw_only=True)
class FleetRow:
    node_id: str
    is_self: bool
    health: str  # "ok", "helping paused", "unreachable (timed out)" ...
    reachable: bool
    downloads: str = DASH  # "2 running, 5 done"
    download_rate: str = DASH
    streams: str = DASH  # "1 / 3" (active / slots)
    streams_served: str = DASH
    sent_today: str = DASH
    group_saved_today: str = DASH  # "12.0 MiB"; DASH: an older node does not say
    rate_limit: str = DASH
    quota: str = DASH  # "3.0 GiB left of 10.0 GiB"
    version: str = DASH


def _downloads(summary: NodeSummary) -> str:
    counts = sorted(summary.downloads.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} {state}" for state, n in counts if n) or "none"


def _health(summary: NodeSummary) -> str:
    if summary.helping_paused:
        return "helping paused"
    if summary.hub_registered is False:
        return "not registered with the hub"
    return "ok"


def fleet_row(entry: FleetEntry) -> FleetRow:
    s = entry.summary
    if s is None:
        error = entry.error or "unreachable"
        return FleetRow(node_id=entry.node_id, is_self=entry.own, health=error, reachable=False)
    quota = "no quota"
    if s.daily_quota is not None:
        quota = f"{human_bytes(s.quota_left)} left of {human_bytes(s.daily_quota)}"
    return FleetRow(
        node_id=s.node_id,
        is_self=entry.own,
        health=_health(s),
        reachable=True,
        downloads=_downloads(s),
        download_rate=human_rate(s.download_rate),
        streams=f"{s.active_streams} / {s.slots}",
        streams_served=str(s.streams_served),
        sent_today=human_bytes(s.bytes_sent_today),
        group_saved_today=human_bytes(s.group_saved_today),
        rate_limit="no limit" if s.rate_limit is None else human_rate(s.rate_limit),
        quota=quota,
        version=s.version,
    )


async def _rows(portal: Portal) -> tuple[list[FleetRow], str | None]:
    if portal.api.fleet is None:
        return [], "this node cannot gather a fleet view"
    entries, note = await portal.api.fleet()
    return [fleet_row(e) for e in entries], note


async def fleet_page(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    rows, note = await _rows(portal)
    return portal.page("fleet.html", nav="fleet", csrf=request[SESSION].csrf, rows=rows, note=note)


async def live_fleet(request: web.Request) -> web.StreamResponse:
    portal = request.app[PORTAL]

    async def render() -> tuple[dict[str, str], bool]:
        rows, note = await _rows(portal)
        return {"fleet-body": portal.render("parts/fleet_rows.html", rows=rows, note=note)}, False

    return await live_stream(request, FLEET_INTERVAL, render)
