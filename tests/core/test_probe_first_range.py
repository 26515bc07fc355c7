"""The probe that is the download's first range (``Probe(first_range=N)``, issue #14): a
plain 206 of exactly the asked start answers it; anything else goes on as the HEAD probe."""

from __future__ import annotations

import pytest

from swarmget.core.errors import OriginUnusable
from swarmget.core.http import Validator
from swarmget.core.probe import RANGE_PROBE, Done, Failed, Fetch, Probe, ProbeState
from swarmget.core.ranges import ByteRange

NOW = 1_700_000_000.0
START = "http://a.example/dir/f.iso"
N = 256
FIRST = Fetch(method="GET", url=START, headers=(("Range", "bytes=0-255"),))


def _started(url: str = START) -> Probe:
    probe = Probe(url, first_range=N)
    assert probe.start() == Fetch(method="GET", url=url, headers=(("Range", "bytes=0-255"),))
    assert probe.state is ProbeState.FIRST
    return probe


def _partial(first: int, last: int, total: str, **extra: str) -> dict[str, str]:
    length = {"Content-Length": str(last - first + 1)}
    return {"Content-Range": f"bytes {first}-{last}/{total}", **length, "ETag": '"v1"', **extra}


def test_a_206_of_the_first_bytes_answers_the_probe_and_names_them() -> None:
    probe = _started()
    headers = _partial(0, N - 1, "1000", **{"Content-Disposition": 'attachment; filename="x"'})
    action = probe.on_answer(206, headers, now_epoch=NOW)
    assert isinstance(action, Done)
    assert action.first == ByteRange(0, N)
    info = action.info
    assert (info.size, info.accepts_ranges, info.final_url, info.filename) == (
        1000,
        True,
        START,
        "x",
    )
    assert info.validator == Validator(etag='"v1"')
    assert probe.state is ProbeState.DONE


def test_a_file_shorter_than_the_first_range_is_all_in_it() -> None:
    action = _started().on_answer(206, _partial(0, 99, "100"), now_epoch=NOW)
    assert isinstance(action, Done)
    assert (action.first, action.info.size) == (ByteRange(0, 100), 100)


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, {"Content-Length": "1000"}),  # ranges ignored
        (206, _partial(1, N, "1000")),  # a lying Content-Range: another start
        (206, _partial(0, N - 2, "1000")),  # ... fewer bytes than asked
        (206, _partial(0, N - 1, "*")),  # no size
        (206, {"Content-Range": f"bytes 0-{N - 1}/1000", "Content-Length": "7"}),
        (206, {"Content-Range": "nonsense"}),
        (206, {"Content-Length": str(N)}),  # no Content-Range (multipart ...)
        (206, _partial(0, N - 1, "1000", **{"Content-Encoding": "gzip"})),
        (416, {"Content-Range": "bytes */0"}),  # an empty file
        (403, {}),
        (404, {}),
        (503, {"Retry-After": "1"}),
    ],
)
def test_any_other_answer_goes_on_as_the_head_probe(status: int, headers: dict[str, str]) -> None:
    probe = _started()
    assert probe.on_answer(status, headers, now_epoch=NOW) == Fetch(method="HEAD", url=START)
    assert probe.state is ProbeState.HEAD
    # ... with the HEAD probe's own rules from there: HEAD cannot tell, then bytes=0-0
    assert probe.on_answer(405, {}, now_epoch=NOW) == Fetch(
        method="GET", url=START, headers=RANGE_PROBE
    )
    done = probe.on_answer(206, {"Content-Range": "bytes 0-0/1000"}, now_epoch=NOW)
    assert isinstance(done, Done)
    assert done.first is None  # (that answer's body is not the download's)


def test_a_redirect_is_followed_with_the_same_range() -> None:
    probe = _started()
    action = probe.on_answer(302, {"Location": "/other"}, now_epoch=NOW)
    target = "http://a.example/other"
    assert action == Fetch(method="GET", url=target, headers=(("Range", "bytes=0-255"),))
    done = probe.on_answer(206, _partial(0, N - 1, "1000"), now_epoch=NOW)
    assert isinstance(done, Done)
    assert (done.info.url, done.info.final_url, done.first) == (START, target, ByteRange(0, N))


def test_after_the_fallback_a_redirect_is_followed_with_head() -> None:
    probe = _started()
    probe.on_answer(200, {"Content-Length": "1000"}, now_epoch=NOW)
    action = probe.on_answer(301, {"Location": "http://b.example/f"}, now_epoch=NOW)
    assert action == Fetch(method="HEAD", url="http://b.example/f")


def test_a_bad_redirect_fails_as_it_does_for_head() -> None:
    action = _started().on_answer(302, {"Location": "ftp://x.example/f"}, now_epoch=NOW)
    assert isinstance(action, Failed)
    assert isinstance(action.error, OriginUnusable)


def test_the_first_range_is_at_least_one_byte() -> None:
    with pytest.raises(ValueError, match="first_range"):
        Probe(START, first_range=0)


def test_without_first_range_the_probe_starts_with_head() -> None:
    assert Probe(START).start() == Fetch(method="HEAD", url=START)
