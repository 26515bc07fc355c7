"""A helper's daily data quota, persisted across restarts.

The paper's whole motivation is a per-machine data cap: a helper must never fetch more than
its owner allows per day. Usage is counted per UTC day in a small JSON file in the state
directory, rewritten atomically at most every ``save_every`` bytes and on ``close``; a crash
loses at most that much accounting (documented: keep ``save_every`` small against the quota).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

from swarmget.node.statefiles import write_private

MiB = 1024 * 1024


def utc_day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()


def seconds_to_nextutc_day(now: float) -> float:
    day = dt.datetime.fromtimestamp(now, dt.UTC).date() + dt.timedelta(days=1)
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return max(1.0, midnight.timestamp() - now)


class DailyQuota:
    """Bytes fetched from the origin today, against ``limit`` bytes per UTC day. The same
    accounting serves the LAN allowance (``--lan-daily-quota``: bytes served to LAN peers
    per UTC day, on its own file)."""

    def __init__(
        self,
        path: Path,
        limit: int,
        *,
        clock: Callable[[], float],
        save_every: int = 4 * MiB,
        day: Callable[[float], str] = utc_day,
        until_next_day: Callable[[float], float] = seconds_to_nextutc_day,
    ) -> None:
        self.path = path
        self.limit = limit
        self._clock = clock
        self._day_of, self._until_next_day = day, until_next_day
        self._save_every = save_every
        self._day, self._used = self._load()
        self._unsaved = 0
        self._reserved = 0

    def _load(self) -> tuple[str, int]:
        today = self._day_of(self._clock())
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(self.path.read_text())
            if data["day"] == today and isinstance(data["used"], int):
                return today, data["used"]
        return today, 0

    def _roll(self) -> None:
        today = self._day_of(self._clock())
        if today != self._day:
            self._day, self._used, self._unsaved = today, 0, 0

    def left(self) -> int:
        self._roll()
        return max(0, self.limit - self._used - self._reserved)

    def try_reserve(self, n: int) -> bool:
        """Set aside ``n`` bytes for a stream; False if that would exceed today's quota."""
        if self.left() < n:
            return False
        self._reserved += n
        return True

    def settle(self, reserved: int, used: int) -> None:
        """A stream ended having fetched ``used`` of its ``reserved`` bytes."""
        self._roll()
        self._reserved = max(0, self._reserved - reserved)
        self._used += used
        self._unsaved += used
        if self._unsaved >= self._save_every:
            self.save()

    def save(self) -> None:
        write_private(self.path, json.dumps({"day": self._day, "used": self._used}).encode())
        self._unsaved = 0

    def retry_after(self) -> float:
        return self._until_next_day(self._clock())
