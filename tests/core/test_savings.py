"""The "faster than alone" estimate (issue #16): pure arithmetic and its edge cases."""

from __future__ import annotations

import pytest

from swarmget.core.savings import NoEstimate, own_origin_seconds, speedup_estimate

ME = "me"


def test_whole_time_own_source_gives_the_ratio_of_bytes() -> None:
    s = speedup_estimate(
        fetched_bytes=100, resumed_bytes=0, elapsed=10.0, received={ME: 25, "h1": 75}, own_id=ME
    )
    assert s.factor == pytest.approx(4.0)
    assert (s.own_origin_bytes, s.peer_bytes, s.missing) == (25, 75, None)


def test_own_source_busy_only_part_of_the_time_is_faster_alone() -> None:
    # our own connections fetched 25 bytes in 5 s: 5 B/s; the download did 10 B/s
    s = speedup_estimate(
        fetched_bytes=100,
        resumed_bytes=0,
        elapsed=10.0,
        received={ME: 25, "h1": 75},
        own_id=ME,
        own_seconds=5.0,
    )
    assert s.factor == pytest.approx(2.0)
    assert s.own_origin_seconds == 5.0


def test_no_own_origin_bytes_has_no_estimate_but_counts_the_saving() -> None:
    s = speedup_estimate(
        fetched_bytes=100, resumed_bytes=0, elapsed=10.0, received={ME: 0, "h1": 100}, own_id=ME
    )
    assert s.factor is None
    assert s.missing is NoEstimate.NO_OWN_BYTES
    assert s.peer_bytes == 100


def test_resumed_download_has_no_estimate() -> None:
    s = speedup_estimate(
        fetched_bytes=50, resumed_bytes=50, elapsed=10.0, received={ME: 25, "h1": 25}, own_id=ME
    )
    assert (s.factor, s.missing) == (None, NoEstimate.RESUMED)


@pytest.mark.parametrize("elapsed", [0.0, -1.0])
def test_zero_elapsed_has_no_estimate(elapsed: float) -> None:
    s = speedup_estimate(
        fetched_bytes=100, resumed_bytes=0, elapsed=elapsed, received={ME: 100}, own_id=ME
    )
    assert (s.factor, s.missing) == (None, NoEstimate.NO_TIME)
    assert s.elapsed == 0.0


def test_nothing_fetched_has_no_estimate() -> None:
    s = speedup_estimate(fetched_bytes=0, resumed_bytes=0, elapsed=3.0, received={}, own_id=ME)
    assert s.missing is NoEstimate.NOTHING_FETCHED


def test_alone_is_one() -> None:
    s = speedup_estimate(
        fetched_bytes=100, resumed_bytes=0, elapsed=4.0, received={ME: 100}, own_id=ME
    )
    assert s.factor == pytest.approx(1.0)
    assert s.peer_bytes == 0


def test_own_seconds_longer_than_elapsed_is_capped() -> None:
    s = speedup_estimate(
        fetched_bytes=100,
        resumed_bytes=0,
        elapsed=10.0,
        received={ME: 50, "h": 50},
        own_id=ME,
        own_seconds=30.0,
    )
    assert s.own_origin_seconds == 10.0
    assert s.factor == pytest.approx(2.0)


def test_every_reason_is_said_in_words() -> None:
    assert all(reason.text for reason in NoEstimate)


def test_own_origin_seconds_counts_intervals_with_own_bytes() -> None:
    samples = [[0.0, {}], [1.0, {ME: 10}], [2.0, {ME: 10, "h": 5}], [4.0, {ME: 30, "h": 9}]]
    assert own_origin_seconds(samples, ME) == pytest.approx(3.0)  # 0-1 and 2-4


@pytest.mark.parametrize("samples", [None, [], [[0.0, {}]], [["x", {}], [1.0, {}]], [[0, 5]]])
def test_own_origin_seconds_unknown(samples: object) -> None:
    assert own_origin_seconds(samples, ME) is None  # type: ignore[arg-type]
