"""How late the event loop runs what is due: a probe for benchmarks and debugging.

A process that does too much between two awaits delays everything else on its loop: a
stream's next read, a health answer, a timer. ``LoopLagProbe`` sleeps ``interval`` seconds
over and over and records how much later than asked it woke up (the lag), as the
``swarmget_event_loop_lag_seconds`` histogram and the largest lag seen
(``swarmget_event_loop_lag_max_seconds``) on the service's ``/metrics``.

It is off unless ``SWARMGET_LOOP_LAG_PROBE`` names the interval in seconds (e.g. ``0.01``),
read once when a node or hub starts (``probe_from_env``): it wakes the loop ``1/interval``
times a second, which a benchmark can afford and a quiet node should not pay for.

``SWARMGET_LOOP_STALL_LOG`` (seconds, e.g. ``0.1``) also logs *where* a stalled loop is:
a daemon thread (``StallWatch``) looks at when the probe last ran and, once the loop is
that long past due, logs the loop thread's Python stack (a warning of logger
``swarmget.net.looplag``), a few times per stall. It reads the interpreter's frames and
never touches the loop; with no probe interval given, the probe runs at a quarter of the
threshold. For finding what makes a benchmark's tail (a loop busy in one callback shows
there; a loop waiting for a CPU shows an ordinary line each time, never the same).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swarmget.core.errors import UsageError
from swarmget.net.metrics import HistogramTally

__all__ = [
    "ENV_VAR", "LAG_BUCKETS", "STALL_ENV_VAR", "LoopLagProbe", "StallWatch",
    "interval_from_env", "probe_from_env",
]  # fmt: skip

log = logging.getLogger(__name__)

ENV_VAR = "SWARMGET_LOOP_LAG_PROBE"
STALL_ENV_VAR = "SWARMGET_LOOP_STALL_LOG"
#: stacks logged per stall at most (one each ``threshold`` seconds of it)
MAX_DUMPS_PER_STALL = 3
#: frames of the stalled thread's stack logged (the innermost)
STACK_LIMIT = 30
#: seconds: 1 ms to 2 s, fine around the 20 ms that matters for a requester
LAG_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
)  # fmt: skip
#: bounds of the probe's interval (seconds)
MIN_INTERVAL, MAX_INTERVAL = 0.001, 10.0


def interval_from_env(environ: Mapping[str, str], name: str = ENV_VAR) -> float | None:
    """The seconds ``environ[name]`` asks for, or None (unset or empty: no probe).
    A value that is not a number of seconds within bounds is a ``UsageError``."""
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        interval = float(text)
    except ValueError:
        interval = math.nan
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:  # also false for nan
        raise UsageError(
            f"{name}={text!r}: expected seconds between {MIN_INTERVAL} and {MAX_INTERVAL}"
        )
    return interval


def probe_from_env(environ: Mapping[str, str]) -> LoopLagProbe | None:
    """The probe (and stall log) ``environ`` asks for, or None (see the module doc)."""
    interval = interval_from_env(environ)
    stall = interval_from_env(environ, STALL_ENV_VAR)
    if interval is None and stall is None:
        return None
    if interval is None:
        assert stall is not None
        interval = max(MIN_INTERVAL, stall / 4)
    return LoopLagProbe(interval, stall_log=stall)


class LoopLagProbe(Collector):
    """Measures the running loop's lag every ``interval`` seconds while ``run`` runs."""

    def __init__(
        self,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        stall_log: float | None = None,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self.tally = HistogramTally(buckets=LAG_BUCKETS)
        self.max_lag = 0.0
        #: seconds past due before a ``StallWatch`` logs the loop's stack (None: none)
        self.stall_log = stall_log
        #: when the next wake-up is due (the clock's time; a ``StallWatch`` reads it)
        self.due: float | None = None

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
            self.due = now + self.interval
            handle = loop.call_later(self.interval, wake, self.due)

        self.due = self._clock() + self.interval
        handle = loop.call_later(self.interval, wake, self.due)
        watch = None
        if self.stall_log is not None:
            watch = StallWatch(self, self.stall_log, threading.get_ident(), self._clock)
            watch.start()
        try:
            await loop.create_future()  # until cancelled
        finally:
            handle.cancel()
            if watch is not None:
                watch.stop()

    def collect(self) -> Iterable[Metric]:
        yield self.tally.family(
            "swarmget_event_loop_lag_seconds", "How late the event loop woke a sleeping task."
        )
        yield GaugeMetricFamily(
            "swarmget_event_loop_lag_max_seconds",
            "The largest event loop lag seen since the process started.",
            value=self.max_lag,
        )


class StallWatch:
    """Logs the stack of thread ``thread_id`` (the probed loop's) while ``probe`` is more
    than ``threshold`` seconds past due: at most ``MAX_DUMPS_PER_STALL`` times per stall,
    ``threshold`` apart. A daemon thread, looking every ``threshold / 4`` seconds."""

    def __init__(
        self,
        probe: LoopLagProbe,
        threshold: float,
        thread_id: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._threshold = threshold
        self._thread_id = thread_id
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-stall-watch", daemon=True)
        #: stacks logged so far (for tests and the curious)
        self.logged = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        stalled_due: float | None = None  # the wake-up the current stall is late for
        dumps = 0
        while not self._stop.wait(self._threshold / 4):
            due = self._probe.due
            if due is None:
                continue
            late = self._clock() - due
            if late < self._threshold:
                continue
            if due != stalled_due:  # a new stall
                stalled_due, dumps = due, 0
            if dumps < MAX_DUMPS_PER_STALL and late >= self._threshold * (dumps + 1):
                dumps += 1
                self.check(late)

    def check(self, late: float) -> None:
        """Log where the loop's thread is now, ``late`` seconds past due."""
        frame = sys._current_frames().get(self._thread_id)
        if frame is None:
            return
        stack = "".join(traceback.format_stack(frame, limit=STACK_LIMIT))
        self.logged += 1
        log.warning("event loop %.3f s past due; its thread is at:\n%s", late, stack)
