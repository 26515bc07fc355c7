"""Origin pinning: what an HTTP origin's answers mean for a segmented download.

Theory of operation. A download is pinned to one *representation* of the file at probe
time: the final URL after redirects, its size, and its validator (a strong ETag, else
Last-Modified). Every later request goes to the pinned URL and carries
``If-Range: <validator>`` (RFC 9110 §13.1.5), so that a server whose file changed answers
200 with the whole new file instead of splicing new bytes into our old ones. Each response
is then classified, without I/O and without reading the clock, into "use it" or one
exception of the error tree:

==========================================  =================================================
response to ``Range: bytes=a-b``            meaning
==========================================  =================================================
206, Content-Range ``a-b/size``             ok (Content-Length, if any, must be b-a+1)
206 with another validator                  ``OriginChanged``
206 with another range / total ``*``        ``SourceBroken``
206 with another total                      ``OriginChanged`` (the length changed)
200 with another validator or length        ``OriginChanged`` (If-Range did its job)
200 otherwise                               ``RangesIgnored`` (fall back to one stream)
3xx                                         ``OriginChanged`` (the pinned URL moved)
412                                         ``OriginChanged``
416 ``*/N`` with N != size                  ``OriginChanged``, else ``SourceBroken``
408, 5xx                                    ``SourceRetryable``
429, 503                                    ``SourceRateLimited(retry_after)``
other 4xx                                   ``OriginUnusable``
a Content-Encoding other than identity      ``SourceBroken`` (the bytes are not the file's)
==========================================  =================================================

A 3xx on the pinned URL is ``OriginChanged`` rather than retryable: following it could
splice bytes of another resource into the file, and retrying gets the same redirect.

The probe itself (HEAD, then ``GET bytes=0-0`` when HEAD cannot tell) is decided here too,
by ``facts_from_head``/``facts_from_range_probe``; ``RedirectChain`` bounds redirects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import urljoin

from swarmget.core.digests import Digest, parse_digest_fields
from swarmget.core.errors import (
    InvalidURL,
    OriginChanged,
    OriginUnusable,
    RangesIgnored,
    SourceBroken,
    SourceRateLimited,
    SourceRetryable,
)
from swarmget.core.ranges import ByteRange
from swarmget.core.urls import redact_url, same_origin, validate_url

__all__ = [
    "MAX_RETRY_AFTER",
    "OVERSIZED",
    "REDIRECT_STATUSES",
    "ProbeFacts",
    "RedirectChain",
    "Validator",
    "accepts_ranges",
    "check_range_response",
    "check_stream_response",
    "content_range_value",
    "facts_from_head",
    "facts_from_range_probe",
    "forwardable_headers",
    "get_header",
    "parse_content_length",
    "parse_content_range",
    "parse_retry_after",
    "raise_for_error_status",
    "redirect_target",
]

#: Longest Retry-After we honour, in seconds; a server asking for more gets this.
MAX_RETRY_AFTER = 3600.0
#: RFC 9110 §15.4: the 3xx codes that carry a Location to follow (not 300, 304, 305, 306).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Request fields that must not travel to another origin after a redirect (as curl does).
_CREDENTIAL_FIELDS = frozenset({"authorization", "cookie", "proxy-authorization"})

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


def _validator_change(pinned: Validator | None, headers: Mapping[str, str]) -> str | None:
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


def _unsatisfied_total(value: str | None) -> int | None:
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


def _content_coding(headers: Mapping[str, str]) -> str | None:
    """The Content-Encoding (RFC 9110 §8.4) when it is anything but identity, else None."""
    raw = get_header(headers, "Content-Encoding") or ""
    codings = [c.strip().lower() for c in raw.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    return ", ".join(codings) or None


def _check_identity(headers: Mapping[str, str]) -> None:
    coding = _content_coding(headers)
    if coding is not None:
        raise SourceBroken(f"the server sent Content-Encoding: {coding} despite identity")


# --- statuses ------------------------------------------------------------------------------------


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def raise_for_error_status(status: int, headers: Mapping[str, str], now_epoch: float) -> None:
    """Raise the error-tree exception for a 4xx/5xx status; return for anything below 400.

    429 and 503 are rate limiting (with ``Retry-After``), 408 and other 5xx are transient,
    412 means a precondition on the pinned validator failed, other 4xx are final.
    """
    if status < 400:
        return
    text = _status_text(status)
    if status in (429, 503):
        retry_after = parse_retry_after(get_header(headers, "Retry-After"), now_epoch)
        raise SourceRateLimited(f"the server is busy ({text})", retry_after=retry_after)
    if status == 408 or status >= 500:
        raise SourceRetryable(f"the server answered {text}")
    if status == 412:
        raise OriginChanged(f"the file changed on the server ({text})")
    raise OriginUnusable(f"the server answered {text}")


def check_range_response(
    status: int,
    headers: Mapping[str, str],
    requested: ByteRange,
    pinned: Validator | None,
    size: int,
    *,
    now_epoch: float,
) -> None:
    """Return if the response to ``Range: requested.http_spec()`` delivers exactly those bytes
    of the pinned ``size``-byte representation; raise otherwise (see the module table)."""
    if status == 206:
        _check_partial(headers, requested, pinned, size)
    elif status == 200:
        _check_identity(headers)
        _check_unchanged(headers, pinned, size)
        raise _ranges_ignored(requested)
    elif status == 416:
        _check_unsatisfiable(headers, requested, size)
    else:
        _check_other_status(status, headers, now_epoch)


def _check_partial(
    headers: Mapping[str, str], requested: ByteRange, pinned: Validator | None, size: int
) -> None:
    _check_identity(headers)
    change = _validator_change(pinned, headers)
    if change is not None:
        raise OriginChanged(f"the file changed on the server ({change})")
    raw = get_header(headers, "Content-Range")
    if raw is None:  # e.g. multipart/byteranges, which we never ask for
        raise SourceBroken("206 response without a single Content-Range")
    start, end, total = parse_content_range(raw)
    if total is not None and total != size:
        raise OriginChanged(f"the file changed on the server (size {size} became {total})")
    if (start, end) != (requested.start, requested.end) or total is None:
        raise SourceBroken(f"asked for {requested.http_spec()}, got Content-Range {raw!r}")
    length = parse_content_length(headers)
    if length is not None and length != requested.length:
        raise SourceBroken(f"Content-Length {length} for a {requested.length}-byte range")


def _check_unchanged(
    headers: Mapping[str, str], pinned: Validator | None, size: int | None
) -> None:
    """Raise ``OriginChanged`` when a full (200) response describes another representation."""
    change = _validator_change(pinned, headers)
    if change is None and size is not None:
        length = parse_content_length(headers)
        if length is not None and length != size:
            change = f"size {size} became {length}"
    if change is not None:
        raise OriginChanged(f"the file changed on the server ({change})")


def _ranges_ignored(requested: ByteRange) -> RangesIgnored:
    return RangesIgnored(f"the server ignored Range: {requested.http_spec()} (200)")


def _check_unsatisfiable(headers: Mapping[str, str], requested: ByteRange, size: int) -> None:
    total = _unsatisfied_total(get_header(headers, "Content-Range"))
    if total is not None and total != size:
        raise OriginChanged(f"the file changed on the server (size {size} became {total})")
    raise SourceBroken(f"416 for {requested.http_spec()} of a {size}-byte file")


def _check_other_status(status: int, headers: Mapping[str, str], now_epoch: float) -> None:
    if status in REDIRECT_STATUSES:
        where = get_header(headers, "Location") or "nowhere"
        raise OriginChanged(f"the pinned URL now redirects ({status}) to {redact_url(where)}")
    raise_for_error_status(status, headers, now_epoch)
    raise SourceBroken(f"unexpected status {_status_text(status)}")


def check_stream_response(
    status: int,
    headers: Mapping[str, str],
    pinned: Validator | None,
    size: int | None,
    *,
    now_epoch: float,
) -> int | None:
    """Check the response to a plain GET of the whole pinned representation.

    Returns the number of body bytes to expect (Content-Length, else ``size``, else None
    when unknown). Raises ``OriginChanged`` when the validator or length differ from the
    pinned ones, ``SourceBroken`` for a non-200 success or a content-coding, and the
    ``raise_for_error_status`` errors otherwise.
    """
    if status != 200:
        _check_other_status(status, headers, now_epoch)
    _check_identity(headers)
    _check_unchanged(headers, pinned, size)
    length = parse_content_length(headers)
    return length if length is not None else size


# --- redirects -----------------------------------------------------------------------------------


def redirect_target(url: str, status: int, headers: Mapping[str, str]) -> str | None:
    """The absolute, validated URL a redirect points to, or None when ``status`` is not one.

    ``Location`` may be relative (RFC 9110 §10.2.2) and is resolved against ``url``; the
    fragment is dropped. Raises ``OriginUnusable`` for a redirect without a usable Location.
    """
    if status not in REDIRECT_STATUSES:
        return None
    location = get_header(headers, "Location")
    if not location or not location.strip():
        raise OriginUnusable(f"redirect ({status}) without a Location")
    target = urljoin(url, location.strip()).split("#", 1)[0]
    try:
        return validate_url(target)
    except InvalidURL as exc:
        raise OriginUnusable(f"redirect ({status}) to an unusable URL: {exc}") from exc


@dataclass(slots=True)
class RedirectChain:
    """The URLs visited while following redirects; refuses loops and overly long chains."""

    start: str
    max_redirects: int = 10
    visited: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.visited = [self.start]

    @property
    def current(self) -> str:
        return self.visited[-1]

    def follow(self, target: str) -> str:
        """Record a hop to ``target`` and return it; raise ``OriginUnusable`` on a loop or
        when more than ``max_redirects`` hops were needed."""
        if target in self.visited:
            hops = " -> ".join(redact_url(u) for u in [*self.visited, target])
            raise OriginUnusable(f"redirect loop: {hops}")
        if len(self.visited) > self.max_redirects:
            start = redact_url(self.start)
            raise OriginUnusable(f"more than {self.max_redirects} redirects from {start}")
        self.visited.append(target)
        return target


def forwardable_headers(
    headers: Mapping[str, str], original_url: str, target_url: str
) -> dict[str, str]:
    """The user's extra request headers that may be sent to ``target_url``: credentials
    (Authorization, Cookie, Proxy-Authorization) only go to the origin the user named."""
    if same_origin(original_url, target_url):
        return dict(headers)
    return {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_FIELDS}


# --- probing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeFacts:
    """What a probe response says about the representation at the final URL."""

    size: int | None
    validator: Validator | None
    accepts_ranges: bool
    digests: tuple[Digest, ...] = ()
    content_disposition: str | None = None


def _facts(headers: Mapping[str, str], size: int | None, ranges: bool) -> ProbeFacts:
    return ProbeFacts(
        size=size,
        validator=Validator.from_headers(headers),
        accepts_ranges=ranges,
        digests=tuple(parse_digest_fields(get_header(headers, "Repr-Digest") or "")),
        content_disposition=get_header(headers, "Content-Disposition"),
    )


def facts_from_head(
    status: int, headers: Mapping[str, str], *, now_epoch: float
) -> ProbeFacts | None:
    """The facts from a (non-redirect) HEAD response, or None when HEAD cannot tell and the
    caller should ask ``GET`` with ``Range: bytes=0-0`` instead.

    404 and 410 are final (``OriginUnusable``), 429/503 are rate limiting. Any other failure
    falls back to GET: servers refuse HEAD (405, 501) and presigned URLs whose signature
    covers the method answer 403. A 200 without a positive Content-Length also falls back
    (chunked, or the ``Content-Length: 0`` some frameworks send for every HEAD), and so
    does a content-coding, so the GET's answer decides.
    """
    if status in (404, 410, 429, 503):
        raise_for_error_status(status, headers, now_epoch)
    if status != 200 or _content_coding(headers) is not None:
        return None
    size = _content_length_or_none(headers)
    if not size:
        return None
    return _facts(headers, size, accepts_ranges(headers))


def _content_length_or_none(headers: Mapping[str, str]) -> int | None:
    try:
        return parse_content_length(headers)
    except SourceBroken:
        return None


def facts_from_range_probe(
    status: int, headers: Mapping[str, str], *, now_epoch: float
) -> ProbeFacts:
    """The facts from the response to ``GET`` with ``Range: bytes=0-0`` (body unread).

    206 proves range support and gives the size from Content-Range; 200 means no ranges
    (size from Content-Length, if any); 416 with ``*/0`` is an empty file. A content-coding
    is ``OriginUnusable``: the server will not send the file's own bytes.
    """
    if status in (200, 206) and _content_coding(headers) is not None:
        coding = _content_coding(headers)
        raise OriginUnusable(f"the server only sends the file with Content-Encoding: {coding}")
    if status == 206:
        return _facts(headers, _probe_total(headers), True)
    if status == 200:
        return _facts(headers, parse_content_length(headers), False)
    if status == 416:  # bytes=0-0 is unsatisfiable only for an empty file
        if _unsatisfied_total(get_header(headers, "Content-Range")) == 0:
            return _facts(headers, 0, False)
        raise SourceBroken("416 to GET bytes=0-0 for a file that is not empty")
    if status in REDIRECT_STATUSES:
        raise OriginUnusable(f"unexpected redirect ({status})")
    raise_for_error_status(status, headers, now_epoch)
    raise SourceBroken(f"unexpected status {_status_text(status)} to GET bytes=0-0")


def _probe_total(headers: Mapping[str, str]) -> int | None:
    raw = get_header(headers, "Content-Range")
    if raw is None:
        raise SourceBroken("206 response without a Content-Range")
    start, _, total = parse_content_range(raw)
    if start != 0:
        raise SourceBroken(f"asked for bytes=0-0, got Content-Range {raw!r}")
    return total
