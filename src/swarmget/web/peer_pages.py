"""The portal's peers page: this node and the live nodes of its group, and its live updates."""

from __future__ import annotations

import asyncio

from aiohttp import web

from swarmget.core.errors import HubError
from swarmget.web import views
from swarmget.web.live import live_stream
from swarmget.web.site import HUB_TIMEOUT, PORTAL, SESSION, Portal

__all__ = ["live_peers", "peers_page"]

PEERS_INTERVAL = 2.0


async def _peer_rows(portal: Portal) -> tuple[list[views.PeerRow], str | None]:
    status = portal.api.status()
    own = views.self_row(status, address=str(status.get("peer_url", "")).removeprefix("http://"))
    try:
        async with asyncio.timeout(HUB_TIMEOUT):
            peers = await portal.api.peers()
    except (HubError, TimeoutError) as exc:
        return [own], f"the hub cannot be reached ({exc or 'timed out'})"
    now = portal.clock()
    rows = sorted((views.peer_row(p, now=now) for p in peers), key=lambda r: r.node_id)
    note = None if rows else "no other node of this group is online (or there is no hub)"
    return [own, *rows], note


async def peers_page(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    rows, note = await _peer_rows(portal)
    return portal.page("peers.html", nav="peers", csrf=request[SESSION].csrf, rows=rows, note=note)


async def live_peers(request: web.Request) -> web.StreamResponse:
    portal = request.app[PORTAL]

    async def render() -> tuple[dict[str, str], bool]:
        rows, note = await _peer_rows(portal)
        return {"peers-body": portal.render("parts/peer_rows.html", rows=rows, note=note)}, False

    return await live_stream(request, PEERS_INTERVAL, render)
