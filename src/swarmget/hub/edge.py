"""The hub's HTTP edge, shared by its routes (``swarmget.hub.app``, ``.content_routes``):
refusals as JSON errors, strict request bodies, and owned background loops.

A handler refuses a request by raising ``HubRefusal(code, message)``: ``code`` is a row of
``HUB_ERRORS`` (its status comes from there, so the client reads the same code back); the
``refusals`` middleware answers it as ``{"error", "code"}`` (with Retry-After when given), as
it answers a storage failure (503) and aiohttp's own HTTP errors. ``parse_body`` reads a body
of at most ``limit`` bytes into a pydantic model: 413 ``too_large`` over it, 400
``bad_request`` naming the field at fault otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import pydantic
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from swarmget.core.errors import StorageError
from swarmget.hub.refusal import HubRefusal
from swarmget.net.auth import json_error

__all__ = ["HubRefusal", "owned_loop", "parse_body", "refusals"]

_Model = TypeVar("_Model", bound=BaseModel)


async def parse_body(request: web.Request, model: type[_Model], limit: int) -> _Model:
    """The request's body (empty: ``{}``) as ``model``, or a ``HubRefusal``."""
    body = await request.read() or b"{}"
    if len(body) > limit:
        raise HubRefusal("too_large", f"request bodies are at most {limit} bytes")
    try:
        return model.model_validate_json(body)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise HubRefusal("bad_request", f"{where}: {first['msg']}") from exc


@web.middleware
async def refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals, storage failures and aiohttp's own errors, as JSON."""
    try:
        return await handler(request)
    except HubRefusal as exc:
        wait = {} if exc.retry_after is None else {"Retry-After": str(round(exc.retry_after))}
        return json_error(exc.status, str(exc), exc.code, headers=wait)
    except StorageError as exc:
        return json_error(503, str(exc), exc.code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason, "http", headers=_allow_header(exc.headers))


def _allow_header(headers: Mapping[str, str]) -> dict[str, str]:
    return {"Allow": headers["Allow"]} if "Allow" in headers else {}


def owned_loop(
    make: Callable[[], Coroutine[Any, Any, None]],
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    """An ``app.cleanup_ctx`` entry running ``make()`` as a task while the app runs: the
    task is owned (cancelled and awaited at cleanup), never left behind."""

    @contextlib.asynccontextmanager
    async def running(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(make())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return running
