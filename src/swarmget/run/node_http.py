"""One JSON request to the local node's user API on its Unix socket, without aiohttp.

``swarmget get`` handed to the node, ``status``, ``pause`` ... make a few small requests to
the node over ``api.sock`` (``run.remote``); importing aiohttp's client for them cost the
command ~0.1 s of its start, and h11 ~17 ms more of ``run.early``'s (issue #14). Here each
request is its own connection (``Connection: close``: a Unix socket connects in
microseconds), written and read by the few lines below, standard library only: the
answer's head strictly (a status line ``HTTP/1.x NNN``, ``name: value`` lines, CRLF line
ends, at most ``MAX_HEAD`` bytes), its body by ``Content-Length``, ``chunked`` or the end of
the connection, whole, up to ``MAX_ANSWER`` bytes. Errors are those of the socket
(``OSError``; a connection that ends before the whole answer is a ``ConnectionError``), of
the framing (``AnswerBroken``, a ``ValueError``) or of the JSON (``ValueError``): the
caller translates them.
"""

from __future__ import annotations

import enum
import json
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing costs the early hand-off ~4 ms)
    from collections.abc import Mapping
    from typing import Any

__all__ = ["MAX_ANSWER", "MAX_HEAD", "AnswerBroken", "request_json", "request_json_blocking"]

#: The longest answer body read (a download's JSON with its 500 latest events is ~100 KiB).
MAX_ANSWER = 16 * 1024 * 1024
#: The longest answer head read (status line, fields and the blank line).
MAX_HEAD = 64 * 1024
_HOST = "swarmget-node"  # (only the path matters to the node)
_READ = 64 * 1024
_NO_BODY = (204, 304)
_HEX = b"0123456789abcdefABCDEF"


class _Framing(enum.Enum):
    """How the answer's body is delimited (known once its head is read)."""

    HEAD = "head"  # the head is not read yet
    LENGTH = "length"  # Content-Length (or no body: 204, 304)
    CHUNKED = "chunked"
    CLOSE = "close"  # to the end of the connection


class AnswerBroken(ValueError):
    """The node's answer is not HTTP/1.1 as this client reads it."""


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
    import contextlib

    request = build_request(method, target, body, headers)
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        writer.write(request)
        await writer.drain()
        answer = Answer()
        while not answer.done:
            answer.feed(await reader.read(_READ))  # (b"": the node closed)
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
    request = build_request(method, target, body, headers)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(request)
        answer = Answer()
        while not answer.done:
            answer.feed(sock.recv(_READ))
    return answer.result()


def build_request(
    method: str, target: str, body: Any = None, headers: Mapping[str, str] | None = None
) -> bytes:
    """The bytes of one request; ``ValueError`` for a method, target or field that could
    split the head (a space, CR, LF or NUL where none may be)."""
    payload = b"" if body is None else json.dumps(body).encode()
    fields = [("Host", _HOST), ("Connection", "close"), *(headers or {}).items()]
    if body is not None:
        fields.append(("Content-Type", "application/json"))
    fields.append(("Content-Length", str(len(payload))))
    if not method.isalpha() or not target.startswith("/") or _unsafe(target, " "):
        raise ValueError(f"cannot send {method!r} {target!r}")
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in fields:
        if not name or _unsafe(name, " :") or _unsafe(value, ""):
            raise ValueError(f"cannot send the field {name!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def _unsafe(text: str, also: str) -> bool:
    return any(c < " " or c == "\x7f" or c in also for c in text) or not text.isascii()


class Answer:
    """The final answer's status and its body, read as its bytes come in (``feed``; the
    end of the connection is ``feed(b"")``) until ``done``."""

    def __init__(self) -> None:
        self.done = False
        self._buffer = bytearray()
        self._status = 0
        self._framing = _Framing.HEAD
        self._left = 0  # bytes of the body (LENGTH) or of the chunk (CHUNKED) to come
        self._chunk_end = False  # (chunked: the CRLF after a chunk's data is due)
        self._body = bytearray()

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        if not data:
            self._closed()
            return
        self._buffer += data
        while not self.done and self._step():
            pass

    def result(self) -> tuple[int, Any]:
        if not self.done:
            raise ConnectionError("the node's answer is not complete")
        answer = bytes(self._body)
        return self._status, json.loads(answer) if answer.strip() else None

    def _closed(self) -> None:
        if self._framing is _Framing.CLOSE:
            self.done = True
            return
        raise ConnectionError("the node closed the connection before its whole answer")

    def _step(self) -> bool:
        """One step with what is buffered: True when it made progress."""
        if self._framing is _Framing.HEAD:
            return self._head()
        if self._framing is _Framing.CHUNKED:
            return self._chunk()
        to_close = self._framing is _Framing.CLOSE
        take = len(self._buffer) if to_close else min(self._left, len(self._buffer))
        self._keep(bytes(self._buffer[:take]))
        del self._buffer[:take]
        self._left -= take
        if not to_close and self._left == 0:
            self.done = True
        return False

    def _head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                raise AnswerBroken(f"the answer's head is over {MAX_HEAD} bytes")
            return False
        if end + 4 > MAX_HEAD:
            raise AnswerBroken(f"the answer's head is over {MAX_HEAD} bytes")
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        bare = head.replace(b"\r\n", b"")
        if b"\n" in bare or b"\r" in bare:
            raise AnswerBroken("a line of the answer's head does not end with CRLF")
        lines = head.split(b"\r\n")
        status = _status(lines[0])
        if 100 <= status < 200:  # informational: the final answer follows
            return True
        pairs = [_field(line) for line in lines[1:]]
        names = [name for name, _ in pairs]
        if names.count("content-length") > 1 or names.count("transfer-encoding") > 1:
            raise AnswerBroken("the answer repeats a framing field")
        fields = dict(pairs)
        self._status = status
        encoding = fields.get("transfer-encoding")
        length = fields.get("content-length")
        if encoding is not None:
            if encoding.lower() != "chunked" or length is not None:
                raise AnswerBroken(f"the answer's framing is not read here: {encoding!r}")
            self._framing = _Framing.CHUNKED
        elif status in _NO_BODY:
            self._framing, self.done = _Framing.LENGTH, True
        elif length is not None:
            if not length.isdigit() or len(length) > 20:
                raise AnswerBroken(f"the answer's Content-Length is {length!r}")
            self._left = int(length)
            self._framing = _Framing.LENGTH
            self._room(self._left)
            self.done = self._left == 0
        else:
            self._framing = _Framing.CLOSE
        return True

    def _chunk(self) -> bool:
        if self._chunk_end:
            if len(self._buffer) < 2:
                return False
            if self._buffer[:2] != b"\r\n":
                raise AnswerBroken("a chunk of the answer does not end with CRLF")
            del self._buffer[:2]
            self._chunk_end = False
            return True
        if self._left:
            take = min(self._left, len(self._buffer))
            if not take:
                return False
            self._keep(bytes(self._buffer[:take]))
            del self._buffer[:take]
            self._left -= take
            self._chunk_end = self._left == 0
            return True
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 1024:
                raise AnswerBroken("a chunk size line of the answer is too long")
            return False
        size_text = bytes(self._buffer[:end]).split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or any(c not in _HEX for c in size_text):
            raise AnswerBroken(f"a chunk size of the answer is {size_text!r}")
        size = int(size_text, 16)
        if size == 0:  # the last chunk: trailers (if any), then the blank line
            if self._buffer.find(b"\r\n\r\n", end) >= 0:
                self.done = True
                return False
            if len(self._buffer) > MAX_HEAD:
                raise AnswerBroken("the answer's trailers are too long")
            return False
        del self._buffer[: end + 2]
        self._left = size
        self._room(size)
        return True

    def _keep(self, data: bytes) -> None:
        self._room(len(data))
        self._body += data

    def _room(self, more: int) -> None:
        """``ValueError`` when ``more`` bytes of body would make it over ``MAX_ANSWER``."""
        if len(self._body) + more > MAX_ANSWER:
            raise ValueError(f"the node's answer is over {MAX_ANSWER} bytes")


def _status(line: bytes) -> int:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise AnswerBroken("the answer does not start with an HTTP/1.x status line")
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise AnswerBroken("the answer's status is not three digits")
    return int(code)


def _field(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
        raise AnswerBroken("a field line of the answer is not `name: value`")
    text = value.strip(b" \t")
    if any(b < 0x20 and b != 0x09 or b == 0x7F for b in text) or any(
        b <= 0x20 or b >= 0x7F for b in name
    ):
        raise AnswerBroken("a field of the answer has control characters")
    return name.decode("ascii").lower(), text.decode("latin-1")
