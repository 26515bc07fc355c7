"""HTTP/1.1 message framing for the raw range client (RFC 9112), sans I/O.

``net.rawhttp`` sends its own ``GET`` requests on plain-HTTP origins and reads the answers
itself; this module is the part of that which needs no socket:

* ``build_request`` writes a request head, refusing any name or value that could split it
  (CR, LF, NUL, or a name that is not a token): header injection is impossible by
  construction, whatever the caller passes.
* ``parse_response_head`` reads a response head strictly: a status line
  ``HTTP/1.x NNN reason``, then ``name: value`` lines. Obsolete line folding, bare LF line
  ends, control characters, non-token names, an over-long head and nonsense status lines
  are ``SourceBroken`` (RFC 9112 §2.2, §4, §5: a client may reject what it cannot parse
  unambiguously, and a parser that guesses is how request smuggling starts).

  The status line and the fields are parsed by ``h11`` (a well-kept sans-IO parser). h11
  is more lenient than we want in three ways, so a strict pre-check runs first
  (``_strict_lines``): h11 accepts bare LF line ends, unfolds obs-fold lines and lets
  control characters through in values; we refuse all three. And h11 refuses two things
  our rules decide themselves, so the framing fields are set aside before h11 sees the
  head and judged by ``ResponseHead.framing`` / ``core.http.parse_content_length``:
  ``Transfer-Encoding`` other than plain ``chunked`` (the raw client hands any
  Transfer-Encoding to aiohttp) and a Content-Length of over 20 digits (read as a size no
  disk holds, refused by the storage check). Only HTTP/1.0 and HTTP/1.1 are accepted (h11
  takes any ``HTTP/d.d``).
* ``ResponseHead.framing`` says how the body is delimited (§6.3): ``"none"`` for 1xx, 204
  and 304, ``"chunked"``/``"other"`` when Transfer-Encoding is present (the raw client
  hands those to aiohttp), else ``"length"`` with Content-Length, else ``"close"``.
  Content-Length with Transfer-Encoding, or an invalid Content-Length, is ``SourceBroken``.
* ``ResponseHead.reusable`` says whether the connection may carry another request once
  the body has been read to its end: HTTP/1.1, no ``Connection: close``, length-framed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import h11

from swarmget.core.errors import SourceBroken
from swarmget.core.http import parse_content_length

__all__ = [
    "MAX_HEAD",
    "RequestError",
    "ResponseHead",
    "build_request",
    "find_head_end",
    "parse_response_head",
]

#: The longest response head accepted (status line, headers and the blank line).
MAX_HEAD = 64 * 1024
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_NO_BODY = frozenset({204, 304})


class RequestError(ValueError):
    """A request head that cannot be written safely (our caller's mistake)."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    version: int  # the minor version: 0 or 1
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # in order, names as sent

    def get(self, name: str) -> str | None:
        """The field's value, several lines joined with ", " (RFC 9110 §5.3); None if absent."""
        lowered = name.lower()
        values = [v for k, v in self.headers if k.lower() == lowered]
        return ", ".join(values) if values else None

    def as_dict(self) -> dict[str, str]:
        """Every field once, lower-case names, repeated lines joined (for the checks in
        ``core.http``, which look names up case-insensitively)."""
        out: dict[str, str] = {}
        for name, value in self.headers:
            key = name.lower()
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out

    @property
    def framing(self) -> str:
        """How the body ends: "none", "length", "chunked", "other" (another transfer
        coding) or "close" (read until the server closes)."""
        if self.status < 200 or self.status in _NO_BODY:
            return "none"
        coding = self.get("Transfer-Encoding")
        if coding is not None:
            if self.get("Content-Length") is not None:
                raise SourceBroken("response has both Transfer-Encoding and Content-Length")
            last = coding.split(",")[-1].strip().lower()
            return "chunked" if last == "chunked" else "other"
        return "length" if self.content_length is not None else "close"

    @property
    def content_length(self) -> int | None:
        return parse_content_length(self.as_dict())

    @property
    def reusable(self) -> bool:
        if self.version != 1 or self.framing not in ("length", "none"):
            return False
        tokens = {t.strip().lower() for t in (self.get("Connection") or "").split(",")}
        return "close" not in tokens


def build_request(method: str, target: str, host: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """``METHOD target HTTP/1.1`` with ``Host`` first, then ``headers`` (a ``Host`` among
    them is dropped). Raises ``RequestError`` for anything that would not be one field."""
    if not _TOKEN.fullmatch(method.encode("ascii", "replace")):
        raise RequestError(f"invalid method {method!r}")
    if not target.startswith("/") or _BAD_TARGET.search(target):
        raise RequestError(f"invalid request target {target!r}")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {_field_value('Host', host)}"]
    for name, value in headers:
        if not _TOKEN.fullmatch(name.encode("latin-1", "replace")):
            raise RequestError(f"invalid header name {name!r}")
        if name.lower() != "host":
            lines.append(f"{name}: {_field_value(name, value)}")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as exc:
        raise RequestError(f"header value outside latin-1: {exc}") from exc


def _field_value(name: str, value: str) -> str:
    stripped = value.strip(" \t")
    if _BAD_VALUE.search(stripped.encode("latin-1", "replace")):
        raise RequestError(f"invalid characters in the value of {name}")
    return stripped


def find_head_end(buffer: bytes | bytearray, start: int = 0) -> int | None:
    """The offset just past the blank line ending the head, or None if it has not arrived
    yet (``start`` is where the caller's new bytes began). Raises ``SourceBroken`` when no
    head of at most ``MAX_HEAD`` bytes can be there."""
    found = buffer.find(b"\r\n\r\n", max(0, start - 3))
    if found < 0:
        if len(buffer) >= MAX_HEAD:
            raise SourceBroken(f"response head longer than {MAX_HEAD} bytes")
        return None
    if found + 4 > MAX_HEAD:
        raise SourceBroken(f"response head longer than {MAX_HEAD} bytes")
    return found + 4


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse one head (ending with the blank line, as ``find_head_end`` delimits it)."""
    lines = _strict_lines(head)
    aside: dict[int, tuple[str, str]] = {}  # the framing fields h11 does not see
    for index, line in enumerate(lines[1:], start=1):
        name, colon, value = line.partition(b":")
        if colon and name.lower() in _FRAMING_FIELDS:
            aside[index] = (name.decode("ascii"), value.strip(b" \t").decode("latin-1"))
    kept = [line for index, line in enumerate(lines) if index not in aside]
    event = _h11_parse(b"".join(line + b"\r\n" for line in kept) + b"\r\n")
    if event.http_version not in (b"1.0", b"1.1"):
        raise SourceBroken(f"unsupported HTTP version {event.http_version[:8]!r}")
    parsed = iter(event.headers.raw_items())
    headers = tuple(
        aside[index] if index in aside else _field(next(parsed)) for index in range(1, len(lines))
    )
    reason = event.reason.decode("latin-1")
    return ResponseHead(int(event.http_version[-1:]), event.status_code, reason, headers)


_FRAMING_FIELDS = frozenset({b"transfer-encoding", b"content-length"})


def _strict_lines(head: bytes) -> list[bytes]:
    """The head's lines (without the blank one), once what h11 would let pass is refused:
    a head not ending in CRLF CRLF, obs-fold, control characters (a bare CR or LF is one)
    anywhere, and a blank line inside (h11 would stop there)."""
    if not head.endswith(b"\r\n\r\n"):
        raise SourceBroken("response head does not end with a blank line")
    lines = head[:-4].split(b"\r\n")
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise SourceBroken("obsolete line folding in the response head")
    if not all(lines):  # a blank line inside: two heads, or none
        raise SourceBroken("malformed response head: a blank line inside")
    for line in lines:
        if _BAD_VALUE.search(line):
            name = line.partition(b":")[0][:40].decode("latin-1")
            raise SourceBroken(f"control characters in the response head ({name!r})")
    return lines


def _h11_parse(head: bytes) -> h11.Response | h11.InformationalResponse:
    """h11's reading of one complete head (a fresh connection each time: only the head is
    h11's business, the body is read by the caller)."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "-")]))
    conn.receive_data(head)
    try:
        event = conn.next_event()
    except h11.ProtocolError as exc:
        raise SourceBroken(f"malformed response head: {str(exc)[:120]}") from exc
    if not isinstance(event, h11.Response | h11.InformationalResponse):
        raise SourceBroken("malformed response head")  # cannot happen with a whole head
    return event


def _field(item: tuple[bytes, bytes]) -> tuple[str, str]:
    return item[0].decode("ascii"), item[1].decode("latin-1")
