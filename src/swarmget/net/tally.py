"""A histogram counted as things happen, without the Prometheus client until it is scraped.

``HistogramTally`` counts observations by one label's value into fixed buckets; ``family``
renders them for a collector (``net.metrics``, which re-exports it). The counting side is
used on hot paths of processes that serve no metrics (the requester of ``swarmget get
--hub``: its download manager's ``node.tally.DownloadTally``), so this module imports
neither ``prometheus_client`` nor aiohttp's server (~40 ms of that command's start, issue
#14): ``family`` imports the client when a scrape asks for it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.core import HistogramMetricFamily

__all__ = ["DURATION_BUCKETS", "HistogramTally"]

#: seconds: from a tenth of a second to an hour (downloads, fetches)
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


@dataclass
class _Series:
    counts: list[int]  # per bucket, not cumulative; the last is +Inf
    total: float = 0.0


@dataclass
class HistogramTally:
    """Observations of one histogram family, by one label's value, counted as they happen."""

    buckets: Sequence[float] = DURATION_BUCKETS
    _series: dict[str, _Series] = field(default_factory=dict)

    def observe(self, label: str, value: float) -> None:
        series = self._series.setdefault(label, _Series([0] * (len(self.buckets) + 1)))
        series.counts[bisect.bisect_left(self.buckets, value)] += 1
        series.total += value

    def count(self, label: str) -> int:
        series = self._series.get(label)
        return 0 if series is None else sum(series.counts)

    def family(
        self, name: str, doc: str, label: str | None = None, labels: Iterable[str] = ("",)
    ) -> HistogramMetricFamily:
        """The family with a series for each of ``labels`` (empty ones too: a dashboard's
        rate() needs the series to exist before the first observation); no label: one
        series, observed under ``""``."""
        from prometheus_client.core import HistogramMetricFamily  # (see the module docstring)

        family = HistogramMetricFamily(name, doc, labels=[] if label is None else [label])
        bounds = [str(b) for b in self.buckets] + ["+Inf"]
        for key in labels:
            series = self._series.get(key) or _Series([0] * (len(self.buckets) + 1))
            cumulative, running = [], 0
            for bound, n in zip(bounds, series.counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            family.add_metric([] if label is None else [key], cumulative, sum_value=series.total)
        return family
