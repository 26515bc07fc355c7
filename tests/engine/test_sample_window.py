"""Where a helper stream is sampled: a window inside what it claimed, of the promised size."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from swarmget.core.ranges import ByteRange
from swarmget.engine import SAMPLE_MIN_WINDOW, sample_window

KiB = 1024


@st.composite
def runs(draw: st.DrawFn) -> list[ByteRange]:
    out, pos = [], draw(st.integers(0, 1000))
    for _ in range(draw(st.integers(1, 4))):
        length = draw(st.integers(1, 300 * KiB))
        out.append(ByteRange(pos, pos + length))
        pos += length + draw(st.integers(1, 5000))
    return out


@given(runs(), st.sampled_from([0.0, 0.01, 0.5]), st.integers(0, 2**32))
def test_the_window_lies_in_one_run_and_is_as_large_as_promised(
    claimed: list[ByteRange], fraction: float, seed: int
) -> None:
    window = sample_window(claimed, fraction, random.Random(seed))
    (run,) = [r for r in claimed if r.start <= window.start and window.end <= r.end]
    total = sum(len(r) for r in claimed)
    assert len(window) == min(len(run), max(SAMPLE_MIN_WINDOW, math.ceil(total * fraction)))


def test_every_byte_can_be_sampled() -> None:
    claimed = [ByteRange(0, 100 * KiB), ByteRange(200 * KiB, 210 * KiB)]
    rng = random.Random(1)
    covered: set[int] = set()
    for _ in range(400):
        w = sample_window(claimed, 0.0, rng)
        covered.update(range(w.start // KiB, -(-w.end // KiB)))
    assert covered == set(range(100)) | set(range(200, 210))


def test_a_first_stream_window_covers_up_to_its_minimum() -> None:
    w = sample_window([ByteRange(0, 1024 * KiB)], 0.01, random.Random(3), 256 * KiB)
    assert len(w) == 256 * KiB
    short = sample_window([ByteRange(5, 100 * KiB)], 0.01, random.Random(3), 256 * KiB)
    assert short == ByteRange(5, 100 * KiB)  # shorter than the window: compared whole
