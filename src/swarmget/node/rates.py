"""A download's rate over time: how many bytes each source had delivered, sampled while the
download runs (``SAMPLE_INTERVAL``), for the portal's chart (``web.views.chart``).

Bounded: beyond ``MAX_SAMPLES`` every other sample is dropped, so a long download keeps its
whole length at a coarser step. Pure bookkeeping: the time comes in as ``at`` (seconds
since the download started).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_SAMPLES", "SAMPLE_INTERVAL", "RateSamples"]

SAMPLE_INTERVAL = 1.0  # seconds
MAX_SAMPLES = 240


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
