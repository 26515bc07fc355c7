"""The portal's live updates: Server-Sent Events carrying re-rendered fragments."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from swarmget.web.site import PORTAL, SESSION

__all__ = ["Render", "live_stream"]

Render = Callable[[], Awaitable[tuple[dict[str, str], bool]]]


async def live_stream(request: web.Request, interval: float, render: Render) -> web.StreamResponse:
    """Send ``update`` events (``{element id: html}``) every ``interval``; ``end`` when done.

    Stops when the client leaves, the session ends or the node shuts down.
    """
    portal = request.app[PORTAL]
    session_id = request[SESSION].id
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        while portal.auth.session(session_id, portal.clock()) is not None:
            parts, final = await render()
            event = "end" if final else "update"
            await resp.write(f"event: {event}\ndata: {json.dumps(parts)}\n\n".encode())
            if final:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await portal.closing.wait()
            if portal.closing.is_set():
                break
    return resp
