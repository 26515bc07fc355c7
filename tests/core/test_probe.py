"""The probe machine (``core.probe``) as a conversation: the test plays the origin."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.errors import (
    InvalidURL,
    OriginUnusable,
    SourceBroken,
    SourceRateLimited,
    SourceRetryable,
    SwarmgetError,
)
from swarmget.core.http import (
    RedirectChain,
    Validator,
    facts_from_head,
    facts_from_range_probe,
    redirect_target,
)
from swarmget.core.probe import RANGE_PROBE, Done, Failed, Fetch, Probe, ProbeState
from swarmget.core.urls import validate_url

NOW = 1_700_000_000.0
START = "http://a.example/dir/f.iso"
OK = {"Content-Length": "1000", "Accept-Ranges": "bytes", "ETag": '"v1"'}


def _started(url: str = START, max_redirects: int = 10) -> Probe:
    probe = Probe(url, max_redirects=max_redirects)
    assert probe.start() == Fetch(method="HEAD", url=url)
    return probe


def _redirect(probe: Probe, location: str, status: int = 302) -> Fetch | Done | Failed:
    return probe.on_answer(status, {"Location": location}, now_epoch=NOW)


def test_a_head_that_tells_everything_is_done() -> None:
    probe = _started()
    action = probe.on_answer(
        200,
        {**OK, "Content-Disposition": 'attachment; filename="x.iso"'},
        now_epoch=NOW,
    )
    assert isinstance(action, Done)
    info = action.info
    assert (info.url, info.final_url, info.size, info.accepts_ranges) == (START, START, 1000, True)
    assert info.validator == Validator(etag='"v1"')
    assert info.filename == "x.iso"
    assert probe.state is ProbeState.DONE


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (405, {}),  # HEAD refused
        (403, {}),  # a presigned URL signed for GET
        (200, {}),  # no length
        (200, {"Content-Length": "0"}),  # the length some frameworks send for every HEAD
        (200, {"Content-Length": "10", "Content-Encoding": "gzip"}),
        (304, {}),  # not a redirect
        (300, {"Location": "/x"}),  # not one either
    ],
)
def test_head_cannot_tell_then_the_range_probe_on_the_same_url(
    status: int, headers: dict[str, str]
) -> None:
    probe = _started()
    assert probe.on_answer(status, headers, now_epoch=NOW) == Fetch(
        method="GET", url=START, headers=RANGE_PROBE
    )
    assert probe.state is ProbeState.RANGE
    action = probe.on_answer(
        206, {"Content-Range": "bytes 0-0/1000", "ETag": '"v1"'}, now_epoch=NOW
    )
    assert isinstance(action, Done)
    assert (action.info.size, action.info.accepts_ranges) == (1000, True)


def test_a_range_probe_answered_200_means_no_ranges() -> None:
    probe = _started()
    probe.on_answer(405, {}, now_epoch=NOW)
    action = probe.on_answer(200, {"Content-Length": "7"}, now_epoch=NOW)
    assert isinstance(action, Done)
    assert (action.info.size, action.info.accepts_ranges) == (7, False)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_followed_with_the_same_method(status: int) -> None:
    probe = _started()
    assert _redirect(probe, "other", status) == Fetch(
        method="HEAD", url="http://a.example/dir/other"
    )
    probe.on_answer(405, {}, now_epoch=NOW)  # HEAD refused there: GET, on the new URL
    assert _redirect(probe, "/third#frag", status) == Fetch(
        method="GET", url="http://a.example/third", headers=RANGE_PROBE
    )
    action = probe.on_answer(200, {"Content-Length": "3"}, now_epoch=NOW)
    assert isinstance(action, Done)
    assert action.info.url == START
    assert action.info.final_url == "http://a.example/third"
    assert action.info.filename == "third"


def test_relative_and_cross_scheme_locations() -> None:
    """Either scheme may redirect to the other (credentials are the adapter's concern)."""
    probe = _started()
    for location, url in [
        ("//b.example/y", "http://b.example/y"),
        ("https://c.example/z", "https://c.example/z"),
        ("../up", "https://c.example/up"),
        ("http://d.example/w", "http://d.example/w"),
    ]:
        assert _redirect(probe, location) == Fetch(method="HEAD", url=url)
    assert probe.current == "http://d.example/w"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no Location
        {"Location": "  "},
        {"Location": "ftp://example.com/x"},  # another scheme
        {"Location": "http://user:pw@example.com/x"},  # credentials
        {"Location": "http://exa mple.com/x"},
    ],
)
def test_unusable_locations_fail(headers: dict[str, str]) -> None:
    probe = _started()
    action = probe.on_answer(302, headers, now_epoch=NOW)
    assert isinstance(action, Failed)
    assert isinstance(action.error, OriginUnusable)
    assert probe.state is ProbeState.FAILED


def test_a_loop_fails() -> None:
    probe = _started()
    _redirect(probe, "/b")
    action = _redirect(probe, START)
    assert isinstance(action, Failed)
    assert isinstance(action.error, OriginUnusable)
    assert "redirect loop" in str(action.error)


def test_a_redirect_to_itself_is_a_loop() -> None:
    probe = _started()
    assert isinstance(_redirect(probe, START), Failed)


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_at_most_max_redirects_hops(limit: int) -> None:
    probe = _started(max_redirects=limit)
    for hop in range(limit):
        assert isinstance(_redirect(probe, f"/hop{hop}"), Fetch)
    action = _redirect(probe, "/one-too-many")
    assert isinstance(action, Failed)
    assert isinstance(action.error, OriginUnusable)
    assert f"more than {limit} redirects" in str(action.error)


@pytest.mark.parametrize(
    ("state_answers", "error"),
    [
        ([(404, {})], OriginUnusable),
        ([(410, {})], OriginUnusable),
        ([(429, {"Retry-After": "5"})], SourceRateLimited),
        ([(503, {})], SourceRateLimited),
        ([(405, {}), (500, {})], SourceRetryable),
        ([(405, {}), (403, {})], OriginUnusable),
        ([(405, {}), (206, {})], SourceBroken),  # no Content-Range
        ([(405, {}), (200, {"Content-Length": "5", "Content-Encoding": "br"})], OriginUnusable),
        ([(405, {}), (416, {"Content-Range": "bytes */9"})], SourceBroken),
    ],
)
def test_error_answers_fail_with_typed_errors(
    state_answers: list[tuple[int, dict[str, str]]], error: type[Exception]
) -> None:
    probe = _started()
    action: Fetch | Done | Failed = Fetch(method="HEAD", url=START)
    for status, headers in state_answers:
        assert isinstance(action, Fetch)
        action = probe.on_answer(status, headers, now_epoch=NOW)
    assert isinstance(action, Failed)
    assert type(action.error) is error


def test_an_empty_file_is_done_after_416() -> None:
    probe = _started()
    probe.on_answer(200, {"Content-Length": "0"}, now_epoch=NOW)
    action = probe.on_answer(416, {"Content-Range": "bytes */0"}, now_epoch=NOW)
    assert isinstance(action, Done)
    assert action.info.size == 0


def test_a_bad_url_fails_at_the_start() -> None:
    action = Probe("ftp://a.example/f").start()
    assert isinstance(action, Failed)
    assert isinstance(action.error, InvalidURL)


def test_a_request_error_fails_the_probe() -> None:
    probe = _started()
    error = SourceRetryable("connect refused")
    assert probe.on_error(error) == Failed(error)
    assert probe.state is ProbeState.FAILED


def test_misuse_is_a_runtime_error() -> None:
    probe = Probe(START)
    with pytest.raises(RuntimeError):
        probe.on_answer(200, OK, now_epoch=NOW)
    probe.start()
    with pytest.raises(RuntimeError):
        probe.start()
    probe.on_answer(200, OK, now_epoch=NOW)
    with pytest.raises(RuntimeError):
        probe.on_answer(200, OK, now_epoch=NOW)
    with pytest.raises(RuntimeError):
        probe.on_error(SourceRetryable("late"))


# --- the machine against the loop it replaced ---------------------------------------------------


def _old_loop(
    url: str, answers: list[tuple[int, dict[str, str]]], max_redirects: int
) -> tuple[list[tuple[str, str]], object]:
    """``OriginClient.probe``'s loop before the machine (net/origin.py, issue #13), with the
    answers scripted: the requests it sent, and its result (facts or an exception)."""
    sent: list[tuple[str, str]] = []
    try:
        url = validate_url(url)
        chain = RedirectChain(url, max_redirects)
        method = "HEAD"
        for status, headers in answers:
            sent.append((method, chain.current))
            target = redirect_target(chain.current, status, headers)
            if target is not None:
                chain.follow(target)
                continue
            if method == "HEAD":
                facts = facts_from_head(status, headers, now_epoch=NOW)
            else:
                facts = facts_from_range_probe(status, headers, now_epoch=NOW)
            if facts is not None:
                return sent, (chain.current, facts.size, facts.validator, facts.accepts_ranges)
            method = "GET"
    except SwarmgetError as exc:
        return sent, (type(exc), str(exc))
    return sent, "pending"


def _machine(
    url: str, answers: list[tuple[int, dict[str, str]]], max_redirects: int
) -> tuple[list[tuple[str, str]], object]:
    sent: list[tuple[str, str]] = []
    probe = Probe(url, max_redirects=max_redirects)
    action: Fetch | Done | Failed = probe.start()
    for status, headers in answers:
        if not isinstance(action, Fetch):
            break
        assert action.headers == (RANGE_PROBE if action.method == "GET" else ())
        sent.append((action.method, action.url))
        action = probe.on_answer(status, headers, now_epoch=NOW)
    if isinstance(action, Done):
        info = action.info
        return sent, (info.final_url, info.size, info.validator, info.accepts_ranges)
    if isinstance(action, Failed):
        return sent, (type(action.error), str(action.error))
    return sent, "pending"


_locations = st.sampled_from(
    ["/a", "/b", "b", "../c", "//other.example/d", "https://a.example/e", START, "ftp://x/y", " "]
)
_answer = st.one_of(
    st.tuples(
        st.sampled_from([301, 302, 303, 307, 308]), st.fixed_dictionaries({"Location": _locations})
    ),
    st.tuples(st.sampled_from([301, 302]), st.just({})),
    st.tuples(
        st.sampled_from([200, 206, 300, 304, 403, 404, 405, 416, 429, 500, 503]),
        st.fixed_dictionaries(
            {},
            optional={
                "Content-Length": st.sampled_from(["0", "1", "1000", "x"]),
                "Content-Range": st.sampled_from(["bytes 0-0/1000", "bytes */0", "bytes 5-5/9"]),
                "ETag": st.just('"v1"'),
                "Content-Encoding": st.just("gzip"),
            },
        ),
    ),
)


@given(
    st.sampled_from([START, "https://a.example/f", "ftp://a.example/f"]),
    st.lists(_answer, max_size=8),
    st.integers(0, 4),
)
def test_the_machine_does_what_the_old_loop_did(
    url: str, answers: list[tuple[int, dict[str, str]]], max_redirects: int
) -> None:
    assert _machine(url, answers, max_redirects) == _old_loop(url, answers, max_redirects)
