"""The HTTP rules a test origin follows, as pure functions (RFC 9110): which range a
``Range`` header asks for, whether ``If-Range`` and ``If-Match`` hold."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

from swarmget.core.ranges import ByteRange

Unsatisfiable = Literal["unsatisfiable"]
UNSATISFIABLE: Unsatisfiable = "unsatisfiable"

_RANGE_RE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.ASCII | re.IGNORECASE)
_ETAG_RE = re.compile(r'(W/)?"[^"]*"')


def parse_range(header: str, size: int) -> ByteRange | Unsatisfiable | None:
    """The one range a ``Range`` header asks for (RFC 9110 §14.1.2).

    None when the header should be ignored: not bytes, several ranges, or invalid syntax.
    """
    m = _RANGE_RE.fullmatch(header)
    if m is None or (m[1] == "" and m[2] == ""):
        return None
    if m[1] == "":  # suffix: the last n bytes
        n = int(m[2])
        return ByteRange(max(0, size - n), size) if n > 0 and size > 0 else UNSATISFIABLE
    first = int(m[1])
    last = int(m[2]) if m[2] else size - 1
    if m[2] and last < first:
        return None
    if first >= size:
        return UNSATISFIABLE
    return ByteRange(first, min(last, size - 1) + 1)


def if_range_holds(header: str | None, etag: str, last_modified: int) -> bool:
    """Whether a Range may be honoured given ``If-Range`` (RFC 9110 §13.1.5)."""
    if header is None:
        return True
    header = header.strip()
    if header.startswith(('"', "W/")):
        return header == etag  # strong comparison: a weak tag never matches
    try:
        return int(parsedate_to_datetime(header).timestamp()) == last_modified
    except (TypeError, ValueError):
        return False


def if_match_holds(header: str | None, etag: str) -> bool:
    """Whether ``If-Match`` lets the request proceed (RFC 9110 §13.1.1, strong comparison)."""
    if header is None or header.strip() == "*":
        return True
    return any(m[1] is None and m[0] == etag for m in _ETAG_RE.finditer(header))


def content_range(r: ByteRange, size: int, lie: bool) -> str:
    start, last = r.start, r.end - 1
    if lie:  # shift the claimed range by one byte, staying inside the file when possible
        shift = 1 if last + 1 < size else -1 if start > 0 else 0
        size += 1 if shift == 0 else 0
        start, last = start + shift, last + shift
    return f"bytes {start}-{last}/{size}"


@dataclass(frozen=True)
class Plan:
    """How to answer one request: the status and the bytes of the file to send."""

    status: int
    start: int = 0
    end: int = 0
    content_range: str | None = None
