"""HTTP field values a segmented download reads and writes (RFC 9110), parsed without I/O.

Validators (a strong ETag and/or Last-Modified, §8.8) and how a response's differ from the
pinned ones; ``Content-Range`` (§14.4) both ways and the ``*/N`` of a 416 (§15.5.17);
``Content-Length`` (§8.6), ``Retry-After`` (§10.2.3, against the caller's clock),
``Accept-Ranges`` (§14.3) and ``Content-Encoding`` (§8.4). What the values *mean* for a
download (use the response, or which error) is ``swarmget.core.http``.

Counts longer than any file are never handed to ``int()`` (which refuses more than 4300
digits): they are invalid, or saturate to ``OVERSIZED``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from swarmget.core.errors import SourceBroken
from swarmget.core.ranges import ByteRange

__all__ = [
    "MAX_RETRY_AFTER",
    "OVERSIZED",
    "Validator",
    "accepts_ranges",
    "check_identity_coding",
    "content_coding",
    "content_range_value",
    "get_header",
    "parse_content_length",
    "parse_content_range",
    "parse_retry_after",
    "unsatisfied_total",
    "validator_change",
]

#: Longest Retry-After we honour, in seconds; a server asking for more gets this.
MAX_RETRY_AFTER = 3600.0

# A byte count has at most 19 digits: 2**63 - 1, the largest any file system holds, has 19.
# A longer one is invalid rather than handed to int(), which refuses more than 4300 digits.
_COUNT = "[0-9]{1,19}"
_CONTENT_RANGE = re.compile(rf"bytes[ \t]+({_COUNT})-({_COUNT})/({_COUNT}|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(rf"bytes[ \t]+\*/({_COUNT})", re.IGNORECASE)
_BYTE_COUNT = re.compile(_COUNT)
_DIGITS = re.compile(r"[0-9]+")
OVERSIZED = 2**64  # what a Content-Length of more than 19 digits is read as: no file is as large


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, looked up case-insensitively (aiohttp's CIMultiDict or a dict)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


# --- validators (RFC 9110 §8.8) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validator:
    """What pins the representation: a strong ETag and/or a Last-Modified date.

    Weak ETags (``W/"..."``) are never kept: RFC 9110 §13.1.5 forbids them in If-Range,
    and a weak match does not promise identical bytes (§8.8.3.1).
    """

    etag: str | None = None
    last_modified: str | None = None

    def __post_init__(self) -> None:
        if self.etag is None and self.last_modified is None:
            raise ValueError("a Validator needs an ETag or a Last-Modified date")
        if self.etag is not None and self.etag.startswith("W/"):
            raise ValueError(f"weak ETag {self.etag!r} cannot pin a representation")

    def if_range_value(self) -> str:
        """The ``If-Range`` value: the strong ETag, else the HTTP-date (RFC 9110 §13.1.5)."""
        return self.etag if self.etag is not None else str(self.last_modified)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Validator | None:
        """The validator a response carries, or None when it has neither a strong ETag nor a
        Last-Modified date."""
        etag = _strip(get_header(headers, "ETag"))
        if etag is not None and etag.startswith("W/"):
            etag = None
        last_modified = _strip(get_header(headers, "Last-Modified"))
        if etag is None and last_modified is None:
            return None
        return cls(etag=etag, last_modified=last_modified)

    def __str__(self) -> str:
        if self.etag is not None:
            return f"ETag {self.etag}"
        return f"Last-Modified {self.last_modified}"


def _strip(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def validator_change(pinned: Validator | None, headers: Mapping[str, str]) -> str | None:
    """Why ``headers`` prove a different representation than ``pinned``, or None.

    ETags are compared with the strong comparison of RFC 9110 §8.8.3.2 (so a weak ETag never
    matches); Last-Modified dates are compared only when ETags cannot be.
    """
    if pinned is None:
        return None
    etag = _strip(get_header(headers, "ETag"))
    if pinned.etag is not None and etag is not None:
        return None if etag == pinned.etag else f"ETag {pinned.etag} became {etag}"
    modified = _strip(get_header(headers, "Last-Modified"))
    if pinned.last_modified is not None and modified is not None:
        if modified != pinned.last_modified:
            return f"Last-Modified {pinned.last_modified} became {modified}"
    return None


# --- header values -------------------------------------------------------------------------------


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """Parse ``bytes first-last/complete`` (RFC 9110 §14.4) into ``(start, end, total)``.

    ``end`` is exclusive (``last + 1``) and ``total`` is None for ``*``. Raises
    ``SourceBroken`` when malformed, when ``last < first`` or when ``last >= total``.
    """
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        raise SourceBroken(f"malformed Content-Range {value!r}")
    first, last = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if last < first or (total is not None and last >= total):
        raise SourceBroken(f"impossible Content-Range {value!r}")
    return first, last + 1, total


def content_range_value(rng: ByteRange, total: int | None) -> str:
    """The ``Content-Range`` value for sending ``rng`` of a ``total``-byte file."""
    if rng.is_empty():
        raise ValueError("an empty range has no Content-Range")
    return f"bytes {rng.start}-{rng.end - 1}/{'*' if total is None else total}"


def unsatisfied_total(value: str | None) -> int | None:
    """N from a 416's ``Content-Range: bytes */N`` (RFC 9110 §15.5.17), or None."""
    match = _UNSATISFIED_RANGE.fullmatch(value.strip()) if value else None
    return int(match.group(1)) if match else None


def parse_content_length(headers: Mapping[str, str]) -> int | None:
    """Content-Length (RFC 9110 §8.6), None when absent; raises ``SourceBroken`` when invalid.

    A list of identical values (``42, 42``) is accepted, as §8.6 allows.
    """
    raw = get_header(headers, "Content-Length")
    if raw is None:
        return None
    values = {v.strip() for v in raw.split(",")}
    if len(values) != 1 or not _DIGITS.fullmatch(value := values.pop()):
        raise SourceBroken(f"invalid Content-Length {raw!r}")
    value = value.lstrip("0") or "0"
    # A valid count longer than any file (20+ digits) saturates to OVERSIZED rather than
    # being handed to int() (which refuses 4300+ digits): the storage check refuses it as a
    # size no disk holds, as it refuses 2**63.
    return int(value) if _BYTE_COUNT.fullmatch(value) else OVERSIZED


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3), or None.

    Accepts delay-seconds or an HTTP-date (compared with ``now_epoch``, the caller's clock).
    The result is clamped to ``[0, MAX_RETRY_AFTER]``; unparseable values give None.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # asctime dates carry no zone; HTTP dates are GMT (§5.6.7)
        when = when.replace(tzinfo=UTC)
    return min(max(when.timestamp() - now_epoch, 0.0), MAX_RETRY_AFTER)


def accepts_ranges(headers: Mapping[str, str]) -> bool:
    """True when ``Accept-Ranges`` lists ``bytes`` (RFC 9110 §14.3). Only a hint: the first
    range request is the real test."""
    raw = get_header(headers, "Accept-Ranges") or ""
    return "bytes" in {unit.strip().lower() for unit in raw.split(",")}


def content_coding(headers: Mapping[str, str]) -> str | None:
    """The Content-Encoding (RFC 9110 §8.4) when it is anything but identity, else None."""
    raw = get_header(headers, "Content-Encoding") or ""
    codings = [c.strip().lower() for c in raw.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    return ", ".join(codings) or None


def check_identity_coding(headers: Mapping[str, str]) -> None:
    coding = content_coding(headers)
    if coding is not None:
        raise SourceBroken(f"the server sent Content-Encoding: {coding} despite identity")
