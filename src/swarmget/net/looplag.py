"""How late the event loop runs what is due: a probe for benchmarks and debugging.

A process that does too much between two awaits delays everything else on its loop: a
stream's next read, a health answer, a timer. ``LoopLagProbe`` sleeps ``interval`` seconds
over and over and records how much later than asked it woke up (the lag), as the
``swarmget_event_loop_lag_seconds`` histogram and the largest lag seen
(``swarmget_event_loop_lag_max_seconds``) on the service's ``/metrics``.

It is off unless ``SWARMGET_LOOP_LAG_PROBE`` names the interval in seconds (e.g. ``0.01``),
read once when a node starts (``interval_from_env``): it wakes the loop ``1/interval``
times a second, which a benchmark can afford and a quiet node should not pay for.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swarmget.core.errors import UsageError
from swarmget.net.metrics import HistogramTally

__all__ = ["ENV_VAR", "LAG_BUCKETS", "LoopLagProbe", "interval_from_env"]

ENV_VAR = "SWARMGET_LOOP_LAG_PROBE"
#: seconds: 1 ms to 2 s, fine around the 20 ms that matters for a requester
LAG_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
)  # fmt: skip
#: bounds of the probe's interval (seconds)
MIN_INTERVAL, MAX_INTERVAL = 0.001, 10.0


def interval_from_env(environ: Mapping[str, str]) -> float | None:
    """The probe interval ``environ`` asks for, or None (unset or empty: no probe).
    A value that is not a number of seconds within bounds is a ``UsageError``."""
    text = environ.get(ENV_VAR, "").strip()
    if not text:
        return None
    try:
        interval = float(text)
    except ValueError:
        interval = math.nan
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:  # also false for nan
        raise UsageError(
            f"{ENV_VAR}={text!r}: expected seconds between {MIN_INTERVAL} and {MAX_INTERVAL}"
        )
    return interval


class LoopLagProbe(Collector):
    """Measures the running loop's lag every ``interval`` seconds while ``run`` runs."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self.tally = HistogramTally(buckets=LAG_BUCKETS)
        self.max_lag = 0.0

    def observe(self, lag: float) -> None:
        lag = max(0.0, lag)
        self.tally.observe("", lag)
        self.max_lag = max(self.max_lag, lag)

    async def run(self) -> None:
        """Probe until cancelled. Each wake-up is a plain timer callback (no task step, no
        future per sleep): the probe should cost the loop it measures as little as it can."""
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def wake(asked: float) -> None:
            nonlocal handle
            now = self._clock()
            self.observe(now - asked)
            handle = loop.call_later(self.interval, wake, now + self.interval)

        handle = loop.call_later(self.interval, wake, self._clock() + self.interval)
        try:
            await loop.create_future()  # until cancelled
        finally:
            handle.cancel()

    def collect(self) -> Iterable[Metric]:
        yield self.tally.family(
            "swarmget_event_loop_lag_seconds", "How late the event loop woke a sleeping task."
        )
        yield GaugeMetricFamily(
            "swarmget_event_loop_lag_max_seconds",
            "The largest event loop lag seen since the process started.",
            value=self.max_lag,
        )
