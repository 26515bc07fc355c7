"""Which replicas of one hub registry have stopped: the decision, without a clock or a database.

Hub replicas sharing one registry database each keep a row there with a counter they raise
every fraction of a second (``swarmget.hub.replicas``). Each replica reads every row as
often and gives what it read to a ``ReplicaSightings`` with the time of the read (its own
monotonic clock: no two machines' clocks are ever compared). A replica is *gone* when

* its row disappeared after it had been seen (a replica deletes its row when it stops
  cleanly), or
* its counter has not moved for ``dead_after`` seconds **and** over at least ``min_reads``
  reads: a killed or hung (SIGSTOP) replica raises nothing; the second condition keeps one
  slow read (the database or this process stalled for longer than ``dead_after``) from
  condemning replicas whose raises were held up by the same stall.

A gone replica whose counter moves again is alive again (a hung replica resumed). Rows of
replicas gone for ``forget_after`` seconds are named by ``stale`` so that the caller
deletes them; a replica never seen is ``UNKNOWN`` (an older hub that keeps no row, or a
replica id that was never ours), which is not the same as gone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ReplicaSightings", "ReplicaState"]


class ReplicaState(enum.StrEnum):
    """What one replica knows of another."""

    ALIVE = "alive"
    GONE = "gone"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class _Seen:
    beats: int
    changed_at: float
    unchanged_reads: int = 0
    #: when its row disappeared (None: it has one)
    vanished_at: float | None = None


@dataclass(slots=True)
class ReplicaSightings:
    """The replicas' counters as read by replica ``me`` (see module doc)."""

    me: str
    dead_after: float
    min_reads: int = 3
    forget_after: float = 600.0
    _seen: dict[str, _Seen] = field(default_factory=dict)
    #: the replicas gone as of the latest read (each is news once)
    _told: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.dead_after <= 0 or self.min_reads < 1 or self.forget_after < self.dead_after:
            raise ValueError("dead_after > 0, min_reads >= 1, forget_after >= dead_after")

    def read(self, beats: Mapping[str, int], now: float) -> frozenset[str]:
        """Take one read of every replica's counter at ``now``; returns the replicas that
        are gone as of this read and were not before (whose watchers are to be told)."""
        for replica, count in beats.items():
            seen = self._seen.get(replica)
            if seen is None or seen.beats != count or seen.vanished_at is not None:
                self._seen[replica] = _Seen(beats=count, changed_at=now)
            else:
                seen.unchanged_reads += 1
        for replica, seen in self._seen.items():
            if replica not in beats and seen.vanished_at is None:
                seen.vanished_at = now
        for replica in [r for r, s in self._seen.items() if self._forgotten(s, now)]:
            del self._seen[replica]
        gone = frozenset(r for r in self._seen if self.state(r, now) is ReplicaState.GONE)
        news, self._told = gone - self._told, gone
        return news

    def rebase(self, now: float) -> None:
        """Count every counter as changed at ``now`` (this replica could not read for a
        while, say the database was away: nobody could raise a counter meanwhile, so a still
        counter says nothing yet). Replicas gone already stay gone until theirs moves."""
        for replica, seen in self._seen.items():
            if seen.vanished_at is None and replica not in self._told:
                seen.changed_at, seen.unchanged_reads = now, 0

    def state(self, replica: str, now: float) -> ReplicaState:
        """ALIVE, GONE, or UNKNOWN (never seen, or forgotten)."""
        seen = self._seen.get(replica)
        if seen is None:
            return ReplicaState.UNKNOWN
        if replica == self.me:
            return ReplicaState.ALIVE
        if seen.vanished_at is not None or self._stopped(seen, now):
            return ReplicaState.GONE
        return ReplicaState.ALIVE

    def alive(self, now: float) -> int:
        """How many replicas (``me`` included, once read) are alive."""
        return sum(1 for r in self._seen if self.state(r, now) is ReplicaState.ALIVE)

    def stale(self, now: float) -> frozenset[str]:
        """Replicas whose rows are to be deleted: silent for ``forget_after`` seconds."""
        return frozenset(
            r
            for r, s in self._seen.items()
            if r != self.me and s.vanished_at is None and now - s.changed_at >= self.forget_after
        )

    def _stopped(self, seen: _Seen, now: float) -> bool:
        return now - seen.changed_at >= self.dead_after and seen.unchanged_reads >= self.min_reads

    def _forgotten(self, seen: _Seen, now: float) -> bool:
        return seen.vanished_at is not None and now - seen.vanished_at >= self.forget_after
