"""How fast bytes arrive: a sliding window of ``(time, bytes)`` samples.

A stream (a lease) and a source each keep one. Events change a window: ``add`` when bytes
arrive, ``prune`` when time has moved on (it forgets samples older than ``RATE_WINDOW``
seconds, which no later estimate counts anyway). The estimate, ``rate(now, since)``, is a
query: it never changes the window, so asking how fast a source is (for a snapshot, say)
cannot change what the scheduler decides next.

Time is a monotonic float that only moves forward (``now`` of the scheduler's events).
"""

from __future__ import annotations

from collections import deque

RATE_WINDOW = 5.0  # seconds of history behind a rate estimate
#: the shortest span an estimate divides by (a first burst of bytes is not a huge rate)
MIN_SPAN = 0.05


class RateWindow:
    """Bytes seen in the last ``RATE_WINDOW`` seconds, with a running total."""

    __slots__ = ("_samples", "_total")

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self._total = 0

    def __bool__(self) -> bool:
        """Whether any sample is kept (as of the last ``prune``)."""
        return bool(self._samples)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RateWindow):
            return NotImplemented
        return self._samples == other._samples

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"RateWindow({list(self._samples)!r})"

    def add(self, now: float, nbytes: int) -> None:
        self._samples.append((now, nbytes))
        self._total += nbytes

    def prune(self, now: float) -> None:
        """Forget the samples that fell out of the window ending at ``now``."""
        while self._samples and self._samples[0][0] < now - RATE_WINDOW:
            self._total -= self._samples.popleft()[1]

    def rate(self, now: float, since: float) -> float | None:
        """Bytes per second over the window ending at ``now`` (from ``since`` if that is
        later). With no sample in the window: 0.0 once ``since`` is a whole window ago, else
        None (not measured yet). Changes nothing."""
        cutoff = now - RATE_WINDOW
        total, kept = self._total, len(self._samples)
        for seen, nbytes in self._samples:
            if seen >= cutoff:
                break
            total -= nbytes
            kept -= 1
        if not kept:
            return 0.0 if now - since >= RATE_WINDOW else None
        span = max(now - max(since, cutoff), MIN_SPAN)
        return total / span
