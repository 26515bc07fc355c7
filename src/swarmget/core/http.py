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
The field values themselves (validators, Content-Range, Content-Length, Retry-After ...)
are parsed in ``swarmget.core.http_fields``; its names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
from swarmget.core.http_fields import (
    MAX_RETRY_AFTER,
    OVERSIZED,
    Validator,
    accepts_ranges,
    check_identity_coding,
    content_coding,
    content_range_value,
    get_header,
    parse_content_length,
    parse_content_range,
    parse_retry_after,
    unsatisfied_total,
    validator_change,
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

#: RFC 9110 §15.4: the 3xx codes that carry a Location to follow (not 300, 304, 305, 306).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Request fields that must not travel to another origin after a redirect (as curl does).
_CREDENTIAL_FIELDS = frozenset({"authorization", "cookie", "proxy-authorization"})


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
        check_identity_coding(headers)
        _check_unchanged(headers, pinned, size)
        raise _ranges_ignored(requested)
    elif status == 416:
        _check_unsatisfiable(headers, requested, size)
    else:
        _check_other_status(status, headers, now_epoch)


def _check_partial(
    headers: Mapping[str, str], requested: ByteRange, pinned: Validator | None, size: int
) -> None:
    check_identity_coding(headers)
    change = validator_change(pinned, headers)
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
    change = validator_change(pinned, headers)
    if change is None and size is not None:
        length = parse_content_length(headers)
        if length is not None and length != size:
            change = f"size {size} became {length}"
    if change is not None:
        raise OriginChanged(f"the file changed on the server ({change})")


def _ranges_ignored(requested: ByteRange) -> RangesIgnored:
    return RangesIgnored(f"the server ignored Range: {requested.http_spec()} (200)")


def _check_unsatisfiable(headers: Mapping[str, str], requested: ByteRange, size: int) -> None:
    total = unsatisfied_total(get_header(headers, "Content-Range"))
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
    check_identity_coding(headers)
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
    #: the response's ``Date`` field as sent (a Last-Modified is strong only against it)
    date: str | None = None


def _facts(headers: Mapping[str, str], size: int | None, ranges: bool) -> ProbeFacts:
    return ProbeFacts(
        size=size,
        validator=Validator.from_headers(headers),
        accepts_ranges=ranges,
        digests=tuple(parse_digest_fields(get_header(headers, "Repr-Digest") or "")),
        content_disposition=get_header(headers, "Content-Disposition"),
        date=get_header(headers, "Date"),
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
    if status != 200 or content_coding(headers) is not None:
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
    if status in (200, 206) and content_coding(headers) is not None:
        coding = content_coding(headers)
        raise OriginUnusable(f"the server only sends the file with Content-Encoding: {coding}")
    if status == 206:
        return _facts(headers, _probe_total(headers), True)
    if status == 200:
        return _facts(headers, parse_content_length(headers), False)
    if status == 416:  # bytes=0-0 is unsatisfiable only for an empty file
        if unsatisfied_total(get_header(headers, "Content-Range")) == 0:
            return _facts(headers, 0, False)
        raise SourceBroken("416 to GET bytes=0-0 for a file that is not empty")
    if status in REDIRECT_STATUSES:
        raise OriginUnusable(f"unexpected redirect ({status})")
    raise_for_error_status(status, headers, now_epoch)
    raise SourceBroken(f"unexpected status {_status_text(status)} to GET bytes=0-0")


def facts_from_first_range(
    status: int, headers: Mapping[str, str], first: int
) -> tuple[ProbeFacts, ByteRange] | None:
    """The facts from the answer to ``GET`` with ``Range: bytes=0-(first-1)`` (the probe
    that is the download's first range, issue #14) and the bytes its body holds; None for
    anything but a plain 206 that delivers exactly the start of a file of known size (then
    the caller probes as before, HEAD first, and that answer's rules decide: a server
    without ranges, a content-coding, an error status, a lying Content-Range ...)."""
    if status != 206 or content_coding(headers) is not None:
        return None
    raw = get_header(headers, "Content-Range")
    try:
        start, end, total = parse_content_range(raw) if raw is not None else (-1, -1, None)
        length = parse_content_length(headers)
    except SourceBroken:
        return None
    if start != 0 or total is None or total == 0 or end != min(first, total):
        return None
    if length is not None and length != end:
        return None
    return _facts(headers, total, True), ByteRange(0, end)


def _probe_total(headers: Mapping[str, str]) -> int | None:
    raw = get_header(headers, "Content-Range")
    if raw is None:
        raise SourceBroken("206 response without a Content-Range")
    start, _, total = parse_content_range(raw)
    if start != 0:
        raise SourceBroken(f"asked for bytes=0-0, got Content-Range {raw!r}")
    return total
