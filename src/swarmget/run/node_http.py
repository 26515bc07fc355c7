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

import contextlib
import json
import socket
from collections.abc import Mapping
from typing import Any

import h11

__all__ = ["MAX_ANSWER", "request_json", "request_json_blocking"]

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
    import asyncio  # (running already: the blocking variant below must not import it)

    conn, request = _request(method, target, body, headers)
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        writer.write(request)
        await writer.drain()
        answer = _Answer(conn)
        while not answer.read():
            answer.feed(await reader.read(64 * 1024))  # (b"": the node closed)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return answer.result()


def request_json_blocking(
    socket_path: str,
    method: str,
    target: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float,
) -> tuple[int, Any]:
    """``request_json`` on a blocking socket (``timeout`` seconds for each step), for a
    caller that has no event loop yet (``run.early``)."""
    conn, request = _request(method, target, body, headers)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(request)
        answer = _Answer(conn)
        while not answer.read():
            answer.feed(sock.recv(64 * 1024))
    return answer.result()


def _request(
    method: str, target: str, body: Any, headers: Mapping[str, str] | None
) -> tuple[h11.Connection, bytes]:
    """A client connection and the bytes of the one request it sends."""
    payload = b"" if body is None else json.dumps(body).encode()
    fields = [("Host", _HOST), ("Connection", "close"), *(headers or {}).items()]
    if body is not None:
        fields.append(("Content-Type", "application/json"))
    fields.append(("Content-Length", str(len(payload))))
    conn = h11.Connection(h11.CLIENT)
    events: list[h11.Request | h11.Data | h11.EndOfMessage] = [
        h11.Request(method=method, target=target, headers=fields)
    ]
    if payload:
        events.append(h11.Data(data=payload))
    events.append(h11.EndOfMessage())
    return conn, b"".join(conn.send(event) or b"" for event in events)


class _Answer:
    """The final response's status and its body, as its bytes come in."""

    def __init__(self, conn: h11.Connection) -> None:
        self._conn = conn
        self._status = 0
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        self._conn.receive_data(data)

    def read(self) -> bool:
        """Take the events received so far: True once the answer is complete, False when
        more bytes are needed."""
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                return False
            if isinstance(event, h11.Response):
                self._status = event.status_code
            elif isinstance(event, h11.Data):
                self._size += len(event.data)
                if self._size > MAX_ANSWER:
                    raise ValueError(f"the node's answer is over {MAX_ANSWER} bytes")
                self._chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return True
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the node closed the connection before its answer")
            # (an informational 1xx answer: the final one follows)

    def result(self) -> tuple[int, Any]:
        answer = b"".join(self._chunks)
        return self._status, json.loads(answer) if answer.strip() else None
