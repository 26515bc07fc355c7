"""The probe machine (``core.probe``) as a conversation: the test plays the origin."""

from __future__ import annotations

import pytest

from swarmget.core.errors import (
    InvalidURL,
    OriginUnusable,
    SourceBroken,
    SourceRateLimited,
    SourceRetryable,
)
from swarmget.core.http import Validator
from swarmget.core.probe import RANGE_PROBE, Done, Failed, Fetch, Probe, ProbeState

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
