"""A token bucket, clock-free: callers pass ``now`` and sleep for the delay it returns."""

from __future__ import annotations


class TokenBucket:
    """``rate`` bytes per second with bursts of up to ``burst`` bytes.

    ``reserve(n, now)`` takes ``n`` tokens, going into debt if needed, and returns how long
    the caller must wait before sending them (0.0 when they are available now). Reservations
    are served in order, so concurrent streams share the rate fairly.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(64 * 1024.0, rate / 20)
        self._tokens = self.burst
        self._last: float | None = None

    def reserve(self, n: int, now: float) -> float:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def give_back(self, n: int) -> None:
        """Return ``n`` reserved tokens that will not be used (their sender gave up waiting)."""
        self._tokens = min(self.burst, self._tokens + n)


class EventBudget:
    """At most ``burst`` events at once and ``rate`` per second after that (e.g. log lines).

    ``allow(now)`` says whether one more event may happen now; ``take_skipped()`` returns how
    many were refused since it was last asked (to say "N more left out" once allowed again).
    """

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last: float | None = None
        self._skipped = 0

    def allow(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self._skipped += 1
        return False

    def take_skipped(self) -> int:
        skipped, self._skipped = self._skipped, 0
        return skipped
