"""How much of a source's bytes the sample checks compare: ``--verify-sample`` of all it
delivered, its first stream's larger window included (not on top), never less than the
floor per stream (``SAMPLE_MIN_WINDOW``; a stream shorter than that whole)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.ranges import ByteRange
from swarmget.engine import DownloadSpec
from swarmget.engine.checks import SAMPLE_FIRST_WINDOW, SAMPLE_MIN_WINDOW, IntegrityChecks

KiB, MiB = 1024, 1024 * 1024


def checks(fraction: float) -> IntegrityChecks:
    return IntegrityChecks(DownloadSpec(url="http://example.test/f", verify_sample=fraction))


def windows(c: IntegrityChecks) -> list[int]:
    """The windows queued, in order (each check drawn as the run would draw it)."""
    out = []
    while batch := c.to_start(at_end=True):
        c.running -= len(batch)  # each came back at once
        for check in batch:
            w = c.window(check)
            (run,) = [r for r in check.runs if r.start <= w.start and w.end <= r.end]
            assert len(w) == min(check.window, len(run))
            out.append(len(w))
    return out


def feed(c: IntegrityChecks, source: str, lengths: list[int], at: int = 0) -> int:
    for length in lengths:
        assert c.stream_ended(source, [ByteRange(at, at + length)])
        at += length
    return at


def test_a_holder_serving_256_mib_in_long_streams_costs_one_percent() -> None:
    """The bench's 2nd requester without a digest: 367 streams of ~0.7 MiB from two holders
    cost 1.25 % at the origin when the first window came on top of the 1 %."""
    c = checks(0.01)
    lengths = [700 * KiB + i for i in range(180)]
    end = feed(c, "lan:a", lengths)
    feed(c, "lan:b", lengths, at=end)
    got = windows(c)
    delivered = 2 * sum(lengths)
    assert got[0] == SAMPLE_FIRST_WINDOW  # the first stream of each: its large window
    assert sum(got) <= 2 * math.ceil(sum(lengths) * 0.01)  # 1 %, the first windows within it
    assert sum(got) >= 0.0099 * delivered
    assert min(got) >= SAMPLE_MIN_WINDOW


def test_the_first_window_is_repaid_by_later_streams_at_the_floor() -> None:
    c = checks(0.01)
    feed(c, "h", [MiB] * 60)
    got = windows(c)
    assert got[0] == SAMPLE_FIRST_WINDOW
    # 256 KiB is 1 % of 25.6 MiB: until then the later streams get the floor only
    assert got[1:10] == [SAMPLE_MIN_WINDOW] * 9
    assert got[-1] == math.ceil(MiB * 0.01)  # repaid: 1 % of each stream again


def test_a_source_of_short_streams_gets_the_floor_on_each() -> None:
    c = checks(0.01)
    feed(c, "h", [64 * KiB] * 10 + [KiB])
    got = windows(c)
    assert got[0] == 64 * KiB  # shorter than the first window: compared whole
    assert got[1:-1] == [SAMPLE_MIN_WINDOW] * 9
    assert got[-1] == KiB  # shorter than the floor: whole


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 8 * MiB)), min_size=1, max_size=60),
    st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0]),
)
def test_each_source_gets_its_share_and_every_stream_its_floor(
    streams: list[tuple[str, int]], fraction: float
) -> None:
    c = checks(fraction)
    at = 0
    for source, length in streams:
        at = feed(c, source, [length], at=at)
    got = windows(c)
    assert len(got) == len(streams)
    given_to: dict[str, int] = {}
    delivered: dict[str, int] = {}
    floors: dict[str, int] = {}
    for (source, length), w in zip(streams, got, strict=True):
        floor = SAMPLE_MIN_WINDOW if source in given_to else SAMPLE_FIRST_WINDOW
        assert min(length, floor) <= w <= length  # never below the floor (or the stream)
        given_to[source] = given_to.get(source, 0) + w
        delivered[source] = delivered.get(source, 0) + length
        floors[source] = floors.get(source, 0) + min(length, floor)
        # at every point: at least the share of what it delivered so far (or all of it) ...
        assert given_to[source] >= min(delivered[source], math.ceil(delivered[source] * fraction))
        # ... and more than the share only by what the floors asked for
        assert given_to[source] <= math.ceil(delivered[source] * fraction) + floors[source]
