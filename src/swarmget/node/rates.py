"""A download's rate over time: how many bytes each source had delivered, sampled while the
download runs (``SAMPLE_INTERVAL``), for the portal's chart (``web.views.chart``).

Bounded: beyond ``MAX_SAMPLES`` every other sample is dropped, so a long download keeps its
whole length at a coarser step. ``RateSamples`` is pure bookkeeping (the time comes in as
``at``, seconds since the download started); ``sample_rates`` is the loop that feeds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from swarmget.core.savings import Speedup, own_origin_seconds, speedup_estimate
from swarmget.engine import DownloadProgress, DownloadResult

__all__ = ["MAX_SAMPLES", "SAMPLE_INTERVAL", "RateSamples", "download_speedup", "sample_rates"]

SAMPLE_INTERVAL = 1.0  # seconds
MAX_SAMPLES = 240
#: Samples one sampler takes at most (a week of seconds: a bound, not a plan).
MAX_SAMPLING_TICKS = 7 * 24 * 3600


@dataclass
class RateSamples:
    """``(at, {source id: bytes received so far})``, oldest first."""

    points: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    limit: int = MAX_SAMPLES

    def add(self, at: float, received: Mapping[str, int]) -> None:
        """A sample; one closer than half a ``SAMPLE_INTERVAL`` to the last replaces it (the
        final sample at the end must not make a spike of a few milliseconds)."""
        if len(self.points) > 1 and at - self.points[-1][0] < SAMPLE_INTERVAL / 2:
            self.points.pop()
        self.points.append((at, dict(received)))
        if len(self.points) > self.limit:  # keep the first, then every other one
            self.points = self.points[:1] + self.points[2::2]

    def to_json(self) -> list[list[Any]]:
        return [[at, dict(received)] for at, received in self.points]


async def sample_rates(samples: RateSamples, statistics: Callable[[], DownloadProgress]) -> None:
    """What each source delivered so far, every ``SAMPLE_INTERVAL``, into ``samples`` (run
    beside the download; cancelled when it ends)."""
    samples.add(0.0, {})  # the start: nothing yet
    for _ in range(MAX_SAMPLING_TICKS):
        await asyncio.sleep(SAMPLE_INTERVAL)
        p = statistics()
        samples.add(p.elapsed, {s.source_id: s.received for s in p.sources})


def download_speedup(result: DownloadResult, samples: RateSamples, own_id: str) -> Speedup:
    """A finished download's "faster than alone" estimate (``core.savings``): its sources'
    bytes, the time this node's own source was fetching (from the samples)."""
    received = {s.source_id: s.received for s in result.sources}
    if result.mode == "single-stream" and not received:  # one stream: all our own
        received = {own_id: result.fetched_bytes}
    return speedup_estimate(
        fetched_bytes=result.fetched_bytes,
        resumed_bytes=result.resumed_bytes,
        elapsed=result.elapsed,
        received=received,
        own_id=own_id,
        own_seconds=own_origin_seconds(samples.to_json(), own_id),
    )
