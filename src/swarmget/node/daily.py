"""The node's bytes per day, kept across restarts: from origins and from peers (as a
requester), served to peers (as a helper), and received from / served to LAN peers (fetch
once per LAN, #15), for the portal's overview chart and the group's saved origin bytes.

The live counters (``metrics.DownloadTally``, the helper's ``bytes_served``) count every chunk
as it comes; ``DailyBytes.flush`` adds what they counted since its last flush to today's row
of the history database (``node.history``): once every ``FLUSH_INTERVAL`` (``flush_daily``,
run by the node) and once more at shutdown; never one write per chunk. A day is the UTC
calendar day, the daily quota's (``node.quota.utc_day``); bytes counted across midnight go
to the day of the flush.

``view`` answers the last ``days`` days (the database's rows plus what is counted and not
yet written); ``saved_*`` the origin bytes this node's own link saved: bytes received from
peers (helpers and LAN holders) instead of over it; ``group_saved_*`` the origin bytes this
node saved its group: LAN bytes served plus LAN bytes received (``core.byte_sources``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swarmget.core.byte_sources import group_saved
from swarmget.node.history import DayBytes, DownloadHistory
from swarmget.node.quota import utc_day

__all__ = ["DAYS_SHOWN", "FLUSH_INTERVAL", "DailyBytes", "flush_daily"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 60.0  # seconds between two writes of the counts
DAYS_SHOWN = 14
#: flushes one loop makes at most (a year of minutes: a bound, not a plan)
MAX_FLUSHES = 366 * 24 * 60


@dataclass(frozen=True, kw_only=True)
class Counts:
    origin: int
    peer: int  # from helpers and LAN holders
    served: int  # to requesters, as a helper
    lan_received: int = 0  # from LAN holders
    lan_served: int = 0  # to LAN peers, from this node's holdings


class DailyBytes:
    """Adds the live counters' growth to the history's days (see the module docstring).
    ``read`` returns the counters' totals now (they only grow)."""

    def __init__(
        self,
        history: DownloadHistory | None,
        read: Callable[[], Counts],
        *,
        clock: Callable[[], float],
    ) -> None:
        self._history = history
        self._read = read
        self._clock = clock
        self._written = Counts(origin=0, peer=0, served=0)  # the totals flushed so far
        self._base = self._stored_total()

    def _stored_total(self) -> DayBytes:
        if self._history is None:
            return DayBytes(day="")
        try:
            return self._history.total_bytes()
        except Exception as exc:  # (sqlite3.Error): the counts are a convenience
            log.warning("cannot read the daily byte counts: %s", exc)
            return DayBytes(day="")

    def today(self) -> str:
        return utc_day(self._clock())

    def _pending(self) -> DayBytes:
        now, was = self._read(), self._written
        return DayBytes(
            day=self.today(),
            origin=now.origin - was.origin,
            peer=now.peer - was.peer,
            served=now.served - was.served,
            lan_received=now.lan_received - was.lan_received,
            lan_served=now.lan_served - was.lan_served,
        )

    def flush(self) -> None:
        """Add what was counted since the last flush to today's row."""
        if self._history is None:
            return
        pending = self._pending()
        if not any(_numbers(pending)):
            return
        try:
            self._history.add_bytes([pending])
        except Exception as exc:  # (sqlite3.Error): kept pending, tried again next time
            log.warning("cannot save the daily byte counts: %s", exc)
            return
        self._written = self._read()

    def view(self, days: int = DAYS_SHOWN) -> list[DayBytes]:
        """The last ``days`` days, oldest first, each one listed (zero when nothing moved)."""
        today = datetime.date.fromisoformat(self.today())
        first = today - datetime.timedelta(days=days - 1)
        stored: dict[str, DayBytes] = {}
        if self._history is not None:
            try:
                stored = {d.day: d for d in self._history.days(first.isoformat())}
            except Exception as exc:  # (sqlite3.Error)
                log.warning("cannot read the daily byte counts: %s", exc)
        pending = self._pending()
        out = []
        for i in range(days):
            day = (first + datetime.timedelta(days=i)).isoformat()
            row = stored.get(day, DayBytes(day=day))
            if day == pending.day:
                row = _plus(row, pending)
            out.append(row)
        return out

    def saved_total(self) -> int:
        """Bytes received from peers since the history began (written and pending)."""
        return self._base.peer + self._read().peer

    def group_saved_total(self) -> int:
        """Origin bytes saved for the group since the history began (written and pending)."""
        now = self._read()
        return group_saved(
            lan_served=self._base.lan_served + now.lan_served,
            lan_received=self._base.lan_received + now.lan_received,
        )

    def group_saved_today(self) -> int:
        """Origin bytes saved for the group today (UTC): LAN served plus LAN received."""
        return _group_saved(self.view(1)[-1])

    def to_json(self, days: int = DAYS_SHOWN) -> dict[str, Any]:
        """``{"days": [{"day", "origin", "peer", "served", "lan_received", "lan_served"}
        ...], "today", "saved_today", "saved_total", "group_saved_today",
        "group_saved_total"}`` (``saved_*``: bytes received from peers instead of over our
        own origin link; ``group_saved_*``: LAN served plus LAN received; days are UTC)."""
        shown = self.view(days)
        last = shown[-1] if shown else DayBytes(day=self.today())
        return {
            "days": [
                {
                    "day": d.day,
                    "origin": d.origin,
                    "peer": d.peer,
                    "served": d.served,
                    "lan_received": d.lan_received,
                    "lan_served": d.lan_served,
                }
                for d in shown
            ],
            "today": last.day,
            "saved_today": last.peer,
            "saved_total": self.saved_total(),
            "group_saved_today": _group_saved(last),
            "group_saved_total": self.group_saved_total(),
        }


def _numbers(d: DayBytes) -> tuple[int, ...]:
    return (d.origin, d.peer, d.served, d.lan_received, d.lan_served)


def _group_saved(d: DayBytes) -> int:
    return group_saved(lan_served=d.lan_served, lan_received=d.lan_received)


def _plus(a: DayBytes, b: DayBytes) -> DayBytes:
    return DayBytes(
        day=a.day,
        origin=a.origin + b.origin,
        peer=a.peer + b.peer,
        served=a.served + b.served,
        lan_received=a.lan_received + b.lan_received,
        lan_served=a.lan_served + b.lan_served,
    )


async def flush_daily(daily: DailyBytes, interval: float = FLUSH_INTERVAL) -> None:
    """Flush every ``interval`` seconds (run by the node; cancelled at shutdown, which
    flushes once more)."""
    for _ in range(MAX_FLUSHES):
        await asyncio.sleep(interval)
        daily.flush()
