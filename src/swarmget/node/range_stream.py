"""What the two streaming routes of the peer API share: a helper's ``/v1/range``
(``node.helper``) and a holder's ``/v1/content-range`` (``node.holder``).

Both answer a signed range request before any byte with a ``Refusal`` (a row of
``PEER_ERRORS``, with Retry-After when there is one), then stream exactly ``[start, end)``
with a Content-Length and ``X-Swarm-Range`` (``range_response``). Writes go through
``send``, which cuts a requester that takes no byte for a while (``ReaderStalled``); once
the body has started, a failure ``abort``\\s the connection, so the requester sees a short
body, never a wrong one. ``send_file`` is ``send`` for bytes of an open file (a holder's):
the kernel copies them to the socket (``sendfile``), they never pass through Python.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from typing import BinaryIO

from aiohttp import web

from swarmget.core.ranges import ByteRange, Chunk
from swarmget.net.auth import json_error
from swarmget.protocol.errors import PEER_ERRORS
from swarmget.protocol.peer import RANGE_HEADER, range_header

__all__ = [
    "ReaderStalled",
    "Refusal",
    "StreamCut",
    "abort",
    "range_response",
    "refused",
    "send",
    "send_file",
]


class Refusal(Exception):
    """The node will not take this request: answered with ``code``'s row of ``PEER_ERRORS``."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        row = PEER_ERRORS.row(code)
        self.status, self.code, self.retry_after = row.status, row.code, retry_after


def refused(exc: Refusal) -> web.Response:
    """The JSON error answer for ``exc`` (Retry-After in whole seconds, rounded up)."""
    headers = {"Retry-After": str(math.ceil(exc.retry_after))} if exc.retry_after else {}
    return json_error(exc.status, str(exc), exc.code, headers=headers)


class StreamCut(Exception):
    """Stop streaming to this requester mid-body (it stopped reading, or a limit ran out)."""


class ReaderStalled(StreamCut):
    """The requester took no byte for the route's ``write_stall_timeout``."""


def range_response(rng: ByteRange) -> web.StreamResponse:
    """The (not yet prepared) 200 answer streaming exactly ``rng``."""
    return web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(rng.length),
            RANGE_HEADER: range_header(rng.start, rng.end),
        },
    )


async def send(
    resp: web.StreamResponse,
    data: Chunk,
    stall: float,
    transport: asyncio.BaseTransport | None,
) -> None:
    """Write ``data`` on; raise ``ReaderStalled`` once the requester took no byte for
    ``stall`` seconds. A slow reader that still takes bytes is waited for."""
    try:
        async with asyncio.timeout(stall):
            await resp.write(data)
        return
    except TimeoutError:
        pass  # the bytes are in the transport's buffer: only the wait for room was cut
    if not isinstance(transport, asyncio.WriteTransport):
        raise ReaderStalled(f"the requester took no byte for {stall:g} s")
    left = transport.get_write_buffer_size()
    while left:
        await asyncio.sleep(stall)
        if transport.get_write_buffer_size() >= left:
            raise ReaderStalled(f"the requester took no byte for {stall:g} s")
        left = transport.get_write_buffer_size()


async def send_file(
    file: BinaryIO,
    offset: int,
    count: int,
    stall: float,
    transport: asyncio.BaseTransport | None,
) -> None:
    """Send ``count`` bytes of ``file`` from ``offset`` with the kernel's ``sendfile`` (the
    event loop's; after what the transport already holds, e.g. the headers). Raises
    ``ReaderStalled`` once the requester took no byte for ``stall`` seconds (bytes the
    requester's kernel acknowledged: ``TCP_INFO``), ``OSError`` when the file ends before
    ``count`` bytes (truncated meanwhile) or the connection fails. Once it raised, an
    unknown part of the bytes went out: the caller must ``abort``."""
    if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
        raise ConnectionResetError("the requester's connection is closed")
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(loop.sendfile(transport, file, offset, count))
    try:
        acked = _bytes_acked(transport)
        while not task.done():
            await asyncio.wait({task}, timeout=stall)
            if task.done():
                break
            now = _bytes_acked(transport)
            if now is None or now == acked:
                raise ReaderStalled(f"the requester took no byte for {stall:g} s")
            acked = now
        try:
            sent = task.result()
        except RuntimeError as exc:  # asyncio's word for a transport closing meanwhile
            raise ConnectionResetError(f"sendfile: {exc}") from exc
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # the loop gives the socket back to the transport
            if not task.cancelled():
                task.exception()  # seen: we are raising already
    if sent < count:
        raise OSError(f"the file ended at {offset + sent} of {offset + count}")


#: where ``tcpi_bytes_acked`` lies in Linux's ``struct tcp_info`` (since 4.1)
_ACKED_AT = 120
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)


def _bytes_acked(transport: asyncio.BaseTransport) -> int | None:
    """The bytes of the connection the peer's kernel acknowledged (None: unknown here)."""
    sock = transport.get_extra_info("socket")
    if sock is None or _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 232)
    except OSError:
        return None
    if len(info) < _ACKED_AT + 8:
        return None
    acked: int = struct.unpack_from("=Q", info, _ACKED_AT)[0]
    return acked


def abort(request: web.Request) -> None:
    """Close the requester's connection at once: mid-body, it sees a short body, not an end."""
    if request.transport is not None:
        request.transport.abort()
