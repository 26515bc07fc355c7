"""Origin pinning rules (swarmget.core.http): unit and property tests, no sockets."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.digests import Digest
from swarmget.core.errors import (
    OriginChanged,
    OriginUnusable,
    RangesIgnored,
    SourceBroken,
    SourceRateLimited,
    SourceRetryable,
    SwarmgetError,
)
from swarmget.core.http import (
    MAX_RETRY_AFTER,
    OVERSIZED,
    RedirectChain,
    Validator,
    accepts_ranges,
    check_range_response,
    check_stream_response,
    content_range_value,
    facts_from_head,
    facts_from_range_probe,
    forwardable_headers,
    get_header,
    parse_content_length,
    parse_content_range,
    parse_retry_after,
    raise_for_error_status,
    redirect_target,
)
from swarmget.core.ranges import ByteRange

NOW = 1_700_000_000.0
ETAG = '"v1"'
LM = "Tue, 14 Nov 2023 22:13:20 GMT"
PINNED = Validator(etag=ETAG, last_modified=LM)
SIZE = 1000
RNG = ByteRange(100, 200)


def _partial(**extra: str) -> dict[str, str]:
    headers = {"Content-Range": "bytes 100-199/1000", "Content-Length": "100", "ETag": ETAG}
    headers.update(extra)
    return headers


def _check(status: int, headers: dict[str, str], pinned: Validator | None = PINNED) -> None:
    check_range_response(status, headers, RNG, pinned, SIZE, now_epoch=NOW)


# --- validators ----------------------------------------------------------------------------------


def test_validator_prefers_strong_etag() -> None:
    v = Validator.from_headers({"etag": ETAG, "last-modified": LM})
    assert v == PINNED
    assert v is not None
    assert v.if_range_value() == ETAG


def test_weak_etag_is_not_a_validator() -> None:
    assert Validator.from_headers({"ETag": 'W/"v1"'}) is None
    v = Validator.from_headers({"ETag": 'W/"v1"', "Last-Modified": LM})
    assert v == Validator(last_modified=LM)
    assert v.if_range_value() == LM


def test_validator_construction_rules() -> None:
    assert Validator.from_headers({}) is None
    with pytest.raises(ValueError, match="needs"):
        Validator()
    with pytest.raises(ValueError, match="weak"):
        Validator(etag='W/"x"')


def test_get_header_is_case_insensitive() -> None:
    assert get_header({"content-LENGTH": "5"}, "Content-Length") == "5"
    assert get_header({}, "X") is None


# --- Content-Range -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-0/1", (0, 1, 1)),
        ("bytes 100-199/1000", (100, 200, 1000)),
        ("BYTES 5-9/*", (5, 10, None)),
        ("  bytes 0-499/500 ", (0, 500, 500)),
    ],
)
def test_parse_content_range(value: str, expected: tuple[int, int, int | None]) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes */1000",
        "bytes 5-4/10",
        "bytes 0-10/10",
        "bytes -1-5/10",
        "bytes 0-5",
        "items 0-5/10",
        "bytes 0-5/10, 7-8/10",
        "bytes ٠-٥/١٠",  # non-ASCII digits
        f"bytes 0-{'9' * 4301}/*",  # more digits than int() takes: SourceBroken, not ValueError
        f"bytes 0-5/{'9' * 20}",
    ],
)
def test_parse_content_range_rejects(value: str) -> None:
    with pytest.raises(SourceBroken):
        parse_content_range(value)


@given(
    start=st.integers(0, 2**63),
    length=st.integers(1, 2**40),
    extra=st.none() | st.integers(0, 2**40),
)
def test_content_range_round_trips(start: int, length: int, extra: int | None) -> None:
    rng = ByteRange(start, start + length)
    total = None if extra is None else rng.end + extra
    assert parse_content_range(content_range_value(rng, total)) == (rng.start, rng.end, total)


# --- other headers -------------------------------------------------------------------------------


def test_content_length() -> None:
    assert parse_content_length({"Content-Length": "42"}) == 42
    assert parse_content_length({"Content-Length": "42, 42"}) == 42
    assert parse_content_length({}) is None
    assert parse_content_length({"Content-Length": str(2**63)}) == 2**63
    assert parse_content_length({"Content-Length": "0042"}) == 42
    # Longer than any file: read as OVERSIZED (the storage check refuses it), never int()'d
    for huge in ("9" * 4301, "1" + "0" * 19, "1" + "0" * 30):
        assert parse_content_length({"Content-Length": huge}) == OVERSIZED > 2**63
    for bad in ("-1", "4 2", "42, 43", "", "0x10", "9" * 4301 + "x"):
        with pytest.raises(SourceBroken):
            parse_content_length({"Content-Length": bad})


def test_accepts_ranges() -> None:
    assert accepts_ranges({"Accept-Ranges": "bytes"})
    assert accepts_ranges({"accept-ranges": "none, Bytes"})
    assert not accepts_ranges({"Accept-Ranges": "none"})
    assert not accepts_ranges({})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("0", 0.0),
        ("999999", MAX_RETRY_AFTER),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        (format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0),
        (format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True), 0.0),
        (format_datetime(datetime.fromtimestamp(NOW + 10**6, UTC), usegmt=True), MAX_RETRY_AFTER),
        ("Tue Nov 14 22:13:50 2023", 30.0),  # asctime: no zone, means GMT
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@given(st.text(max_size=40), st.floats(0, 2e9))
def test_parse_retry_after_is_clamped_or_none(value: str, now: float) -> None:
    out = parse_retry_after(value, now)
    assert out is None or 0.0 <= out <= MAX_RETRY_AFTER


# --- range responses -----------------------------------------------------------------------------


def test_exact_partial_response_is_ok() -> None:
    _check(206, _partial())
    _check(206, _partial(), pinned=None)
    headers = _partial()
    del headers["Content-Length"], headers["ETag"]
    _check(206, headers)  # chunked, validator not repeated: still fine


@pytest.mark.parametrize(
    "content_range",
    ["bytes 100-198/1000", "bytes 0-199/1000", "bytes 100-199/*", "garbage"],
)
def test_partial_with_wrong_content_range_is_broken(content_range: str) -> None:
    with pytest.raises(SourceBroken):
        _check(206, _partial(**{"Content-Range": content_range}))


def test_partial_without_content_range_is_broken() -> None:
    headers = _partial()
    del headers["Content-Range"]
    with pytest.raises(SourceBroken, match="without a single Content-Range"):
        _check(206, headers)


def test_partial_with_wrong_length_is_broken() -> None:
    with pytest.raises(SourceBroken, match="Content-Length 99"):
        _check(206, _partial(**{"Content-Length": "99"}))


def test_partial_with_other_total_means_changed() -> None:
    with pytest.raises(OriginChanged, match="size 1000 became 2000"):
        _check(206, _partial(**{"Content-Range": "bytes 100-199/2000"}))


@pytest.mark.parametrize("etag", ['"v2"', 'W/"v1"'])
def test_partial_with_other_etag_means_changed(etag: str) -> None:
    with pytest.raises(OriginChanged, match="changed on the server"):
        _check(206, _partial(ETag=etag))


def test_partial_last_modified_compared_only_without_etags() -> None:
    pinned = Validator(last_modified=LM)
    headers = _partial(**{"Last-Modified": "Wed, 15 Nov 2023 00:00:00 GMT"})
    del headers["ETag"]
    with pytest.raises(OriginChanged, match="Last-Modified"):
        _check(206, headers, pinned=pinned)
    # with matching ETags, a different date does not matter
    _check(206, _partial(**{"Last-Modified": "Wed, 15 Nov 2023 00:00:00 GMT"}))


@pytest.mark.parametrize("coding", ["gzip", "br", "identity, gzip"])
def test_content_encoding_is_broken(coding: str) -> None:
    with pytest.raises(SourceBroken, match="Content-Encoding"):
        _check(206, _partial(**{"Content-Encoding": coding}))
    _check(206, _partial(**{"Content-Encoding": "identity"}))


def test_full_response_to_range_means_ranges_ignored() -> None:
    with pytest.raises(RangesIgnored):
        _check(200, {"Content-Length": "1000", "ETag": ETAG})
    with pytest.raises(RangesIgnored):
        _check(200, {})


def test_full_response_with_other_validator_means_changed() -> None:
    with pytest.raises(OriginChanged, match='ETag "v1" became "v2"'):
        _check(200, {"Content-Length": "1000", "ETag": '"v2"'})
    with pytest.raises(OriginChanged, match="size 1000 became 1001"):
        _check(200, {"Content-Length": "1001"})


def test_412_means_changed() -> None:
    with pytest.raises(OriginChanged):
        _check(412, {})


def test_416_depends_on_total() -> None:
    with pytest.raises(OriginChanged, match="size 1000 became 50"):
        _check(416, {"Content-Range": "bytes */50"})
    with pytest.raises(SourceBroken):
        _check(416, {"Content-Range": "bytes */1000"})
    with pytest.raises(SourceBroken):
        _check(416, {})
    with pytest.raises(SourceBroken):
        _check(416, {"Content-Range": f"bytes */{'9' * 4301}"})


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limited(status: int) -> None:
    with pytest.raises(SourceRateLimited) as info:
        _check(status, {"Retry-After": "7"})
    assert info.value.retry_after == 7.0
    with pytest.raises(SourceRateLimited) as info:
        _check(status, {})
    assert info.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, SourceRetryable),
        (502, SourceRetryable),
        (504, SourceRetryable),
        (408, SourceRetryable),
        (400, OriginUnusable),
        (403, OriginUnusable),
        (404, OriginUnusable),
        (410, OriginUnusable),
        (301, OriginChanged),
        (307, OriginChanged),
        (204, SourceBroken),
        (304, SourceBroken),
        (100, SourceBroken),
    ],
)
def test_other_statuses(status: int, error: type[SwarmgetError]) -> None:
    with pytest.raises(error) as info:
        _check(status, {"Location": "http://elsewhere/"})
    assert not isinstance(info.value, SourceRateLimited)
    if status >= 400:
        assert str(status) in str(info.value)


def test_raise_for_error_status_ignores_success() -> None:
    raise_for_error_status(200, {}, NOW)
    raise_for_error_status(302, {}, NOW)


@given(
    start=st.integers(0, 999),
    length=st.integers(1, 1000),
    shift=st.integers(-5, 5),
    grow=st.integers(-5, 5),
)
def test_only_the_exact_range_is_accepted(start: int, length: int, shift: int, grow: int) -> None:
    requested = ByteRange(start, min(start + length, SIZE))
    got_start = min(SIZE - 1, max(0, requested.start + shift))
    got_end = min(SIZE, max(got_start + 1, requested.end + shift + grow))
    headers = {"Content-Range": content_range_value(ByteRange(got_start, got_end), SIZE)}
    if (got_start, got_end) == (requested.start, requested.end):
        check_range_response(206, headers, requested, None, SIZE, now_epoch=NOW)
    else:
        with pytest.raises(SourceBroken):
            check_range_response(206, headers, requested, None, SIZE, now_epoch=NOW)


# --- whole-file responses ------------------------------------------------------------------------


def test_stream_response() -> None:
    ok = {"Content-Length": "1000", "ETag": ETAG}
    assert check_stream_response(200, ok, PINNED, SIZE, now_epoch=NOW) == 1000
    assert check_stream_response(200, {}, PINNED, SIZE, now_epoch=NOW) == 1000
    assert check_stream_response(200, {}, None, None, now_epoch=NOW) is None
    with pytest.raises(OriginChanged):
        check_stream_response(200, {"ETag": '"v2"'}, PINNED, SIZE, now_epoch=NOW)
    with pytest.raises(OriginChanged):
        check_stream_response(200, {"Content-Length": "5"}, PINNED, SIZE, now_epoch=NOW)
    with pytest.raises(SourceBroken):
        check_stream_response(206, ok, PINNED, SIZE, now_epoch=NOW)
    with pytest.raises(SourceBroken):
        check_stream_response(200, {"Content-Encoding": "gzip"}, None, None, now_epoch=NOW)
    with pytest.raises(SourceRateLimited):
        check_stream_response(503, {"Retry-After": "3"}, PINNED, SIZE, now_epoch=NOW)


# --- redirects -----------------------------------------------------------------------------------


def test_redirect_target_resolves_relative_locations() -> None:
    base = "http://a.example/dir/file"
    assert redirect_target(base, 302, {"Location": "other#frag"}) == "http://a.example/dir/other"
    assert redirect_target(base, 301, {"Location": "/x"}) == "http://a.example/x"
    assert redirect_target(base, 308, {"Location": "//b.example/y"}) == "http://b.example/y"
    assert redirect_target(base, 200, {"Location": "/x"}) is None
    assert redirect_target(base, 304, {}) is None


@pytest.mark.parametrize("location", [None, "", "ftp://x/y", "http://user:pw@h/x"])
def test_redirect_target_rejects_bad_locations(location: str | None) -> None:
    headers = {} if location is None else {"Location": location}
    with pytest.raises(OriginUnusable, match="redirect"):
        redirect_target("http://a.example/", 302, headers)


def test_redirect_chain_bounds_and_loops() -> None:
    chain = RedirectChain("http://h/0", max_redirects=2)
    assert chain.follow("http://h/1") == "http://h/1"
    assert chain.follow("http://h/2") == chain.current == "http://h/2"
    with pytest.raises(OriginUnusable, match="more than 2 redirects"):
        chain.follow("http://h/3")
    loop = RedirectChain("http://h/a")
    loop.follow("http://h/b")
    with pytest.raises(
        OriginUnusable, match="redirect loop: http://h/a -> http://h/b -> http://h/a"
    ):
        loop.follow("http://h/a")


def test_credentials_stay_with_the_named_origin() -> None:
    headers = {"Authorization": "Bearer x", "cookie": "a=b", "X-Other": "1"}
    assert forwardable_headers(headers, "http://a/x", "http://a:80/y") == headers
    assert forwardable_headers(headers, "http://a/x", "https://a/x") == {"X-Other": "1"}
    assert forwardable_headers(headers, "http://a/x", "http://b/x") == {"X-Other": "1"}


# --- probe facts ---------------------------------------------------------------------------------


def test_facts_from_head() -> None:
    digest = "sha-256=:" + "A" * 43 + "=:"
    headers = {
        "Content-Length": "1000",
        "Accept-Ranges": "bytes",
        "ETag": ETAG,
        "Repr-Digest": digest,
        "Content-Digest": "sha-512=:" + "B" * 86 + "==:",
        "Content-Disposition": "attachment; filename=f.bin",
    }
    facts = facts_from_head(200, headers, now_epoch=NOW)
    assert facts is not None
    assert (facts.size, facts.accepts_ranges) == (1000, True)
    assert facts.validator == Validator(etag=ETAG)
    assert facts.digests == (Digest.from_bytes("sha256", b"\x00" * 32),)  # no Content-Digest
    assert facts.content_disposition == "attachment; filename=f.bin"


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, {}),
        (200, {"Content-Length": "0"}),
        (200, {"Content-Length": "junk"}),
        (200, {"Content-Length": "10", "Content-Encoding": "gzip"}),
        (405, {}),
        (501, {}),
        (403, {}),
        (500, {}),
        (204, {}),
    ],
)
def test_head_falls_back_to_get(status: int, headers: dict[str, str]) -> None:
    assert facts_from_head(status, headers, now_epoch=NOW) is None


def test_head_final_answers() -> None:
    for status in (404, 410):
        with pytest.raises(OriginUnusable, match=str(status)):
            facts_from_head(status, {}, now_epoch=NOW)
    with pytest.raises(SourceRateLimited):
        facts_from_head(429, {}, now_epoch=NOW)


def test_facts_from_range_probe() -> None:
    partial = facts_from_range_probe(
        206, {"Content-Range": "bytes 0-0/1234", "ETag": ETAG}, now_epoch=NOW
    )
    assert (partial.size, partial.accepts_ranges, partial.validator) == (
        1234,
        True,
        PINNED.__class__(etag=ETAG),
    )
    full = facts_from_range_probe(200, {"Content-Length": "77"}, now_epoch=NOW)
    assert (full.size, full.accepts_ranges, full.validator) == (77, False, None)
    unknown = facts_from_range_probe(200, {}, now_epoch=NOW)
    assert unknown.size is None
    empty = facts_from_range_probe(416, {"Content-Range": "bytes */0"}, now_epoch=NOW)
    assert (empty.size, empty.accepts_ranges) == (0, False)


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (206, {}, SourceBroken),
        (206, {"Content-Range": "bytes 5-5/10"}, SourceBroken),
        (206, {"Content-Range": "bytes 0-0/10", "Content-Encoding": "gzip"}, OriginUnusable),
        (416, {"Content-Range": "bytes */10"}, SourceBroken),
        (404, {}, OriginUnusable),
        (403, {}, OriginUnusable),
        (502, {}, SourceRetryable),
        (302, {"Location": "/x"}, OriginUnusable),
        (204, {}, SourceBroken),
    ],
)
def test_range_probe_errors(
    status: int, headers: dict[str, str], error: type[SwarmgetError]
) -> None:
    with pytest.raises(error):
        facts_from_range_probe(status, headers, now_epoch=NOW)
