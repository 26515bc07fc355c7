"""One JSON request to the local node's user API on its Unix socket, without aiohttp.

``swarmget get`` handed to the node, ``status``, ``pause`` ... make a few small requests to
the node over ``api.sock`` (``run.remote``); importing aiohttp's client for them cost the
command ~0.1 s of its start (issue #14). Here each request is its own connection
(``Connection: close``: a Unix socket connects in microseconds), framed by ``h11`` (the
sans-IO HTTP/1.1 parser the raw range client uses too), its answer read whole up to
``MAX_ANSWER`` bytes. Errors are those of the socket (``OSError``), of the framing
(``h11.ProtocolError``) or of the JSON (``ValueError``): the caller translates them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import h11

__all__ = ["MAX_ANSWER", "request_json"]

#: The longest answer body read (a download's JSON with its 500 latest events is ~100 KiB).
MAX_ANSWER = 16 * 1024 * 1024
_HOST = "swarmget-node"  # (only the path matters to the node)


async def request_json(
    socket_path: str,
    method: str,
    target: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """``method target`` (a path) with ``body`` as JSON; the answer's status and its JSON
    body (None when empty)."""
    payload = b"" if body is None else json.dumps(body).encode()
    fields = [("Host", _HOST), ("Connection", "close"), *(headers or {}).items()]
    if body is not None:
        fields.append(("Content-Type", "application/json"))
    fields.append(("Content-Length", str(len(payload))))
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        conn = h11.Connection(h11.CLIENT)
        events: list[h11.Request | h11.Data] = [
            h11.Request(method=method, target=target, headers=fields)
        ]
        if payload:
            events.append(h11.Data(data=payload))
        for event in (*events, h11.EndOfMessage()):
            writer.write(conn.send(event) or b"")
        await writer.drain()
        status, answer = await _read_answer(conn, reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return status, json.loads(answer) if answer.strip() else None


async def _read_answer(conn: h11.Connection, reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The final response's status and its body, read to its end."""
    status, chunks, size = 0, [], 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(64 * 1024))  # (b"": the node closed)
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_ANSWER:
                raise ValueError(f"the node's answer is over {MAX_ANSWER} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return status, b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("the node closed the connection before its answer")
        # (an informational 1xx answer: the final one follows)
