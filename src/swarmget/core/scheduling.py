"""The scheduler's vocabulary: its tuning, the kinds of failure it is told about, the actions
it returns to its driver and the snapshots it gives.

Shared by the parts of the scheduler (``pieces``, ``sources``, ``selection``, ``scheduler``)
and re-exported by ``swarmget.core.scheduler``, which is where the rest of the package imports
them from. Everything here is a frozen value or an enum.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from swarmget.core.ranges import ByteRange

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    """Tuning knobs; the defaults suit files from a few MiB to tens of GiB."""

    min_piece: int = 256 * KiB
    max_piece: int = 16 * MiB
    #: aim for this many pieces per connection slot, so a slow source cannot hold up the end
    pieces_per_slot: int = 4
    #: never split a remainder into parts smaller than this
    min_steal: int = 128 * KiB
    stall_timeout: float = 15.0
    #: a stream that delivered before and then nothing for this long counts as making no
    #: progress: the endgame copies and the frontier rescue may take its piece (it is only
    #: revoked after ``stall_timeout``)
    silence: float = 2.0
    #: ... or, once it delivered, for this many of its source's usual gaps between two
    #: reports of data, if that is shorter (but never less than ``silence_floor``): a
    #: helper that streamed steadily and then hung is noticed within a few of its own
    #: beats, not after ``silence``; its source gets no new work until it delivers again
    silence_gaps: float = 10.0
    silence_floor: float = 0.25
    #: ... and a stream that has not delivered yet, after this many of its source's usual
    #: waits for a first byte (the same bounds; all of ``silence`` until one was seen)
    silence_first: float = 5.0
    #: consecutive failures without progress before a source is banned
    max_failures: int = 5
    #: BROKEN answers (lies, short bodies) in the last ``judge_window`` answers before a source
    #: is banned, progress or not (if they also outnumber its good answers there)
    max_broken: int = 3
    #: how many of a source's most recent answers (leases) it is judged by
    judge_window: int = 12
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    steal: bool = True
    endgame: bool = True
    #: an endgame duplicate is only worth it if the holder needs longer than this to finish
    #: (and the copier would finish first, counting its usual wait for a first byte)
    endgame_min_eta: float = 0.25
    #: the *hedge*: once nothing is missing and the bytes still leased are at most what the
    #: swarm delivers in this many seconds, every piece with one copy may get a second from
    #: an idle source that showed progress, slower or not (a helper that hangs at the very
    #: end then costs nothing: its copy goes on). It costs at most this many seconds of the
    #: swarm's bytes. 0: never (only the endgame's copies that beat the lead)
    hedge: float = 0.25
    #: during the hedge, a copy that has not delivered after this many of its source's usual
    #: waits for a first byte is *late*: it no longer holds back another copy of its piece
    #: (as a copy not measured yet does), though it is not silent yet (``silence_first``)
    hedge_late: float = 2.0
    #: ... but never before this many seconds: a source whose first bytes came at once (a
    #: LAN holder, a stream that followed another on the same slot) would make every copy
    #: of it late at once, and a copy for each of them costs bytes for nothing
    hedge_late_floor: float = 0.05
    #: help a slow piece that holds up the contiguous done prefix once this many bytes (or
    #: an eighth of a smaller file) are done beyond it (0: never; the endgame still copies
    #: it at the very end)
    rescue_backlog: int = 32 * MiB
    #: ... by leaving its holder this many seconds of its stream and giving the rest to an
    #: idle slot about as fast
    rescue_keep: float = 1.0
    #: ... looking at the lowest this many pieces in flight (the ones holding up the prefix;
    #: a hung holder's piece beyond them is copied in the endgame)
    rescue_depth: int = 512
    #: what the selector works out from the ledger (the rescue list, the pieces to steal
    #: from or copy, by time to finish) and which sources found nothing are kept for this
    #: many seconds and checked again as they are read, instead of worked out after every
    #: report of data; the rate estimates of all active sources move on as often. 0: after
    #: every change (O(pieces) per event: the decisions of before issue #17's third round)
    refresh: float = 0.05
    #: *pipelining*: a stream whose source's usual wait for a first byte
    #: (``Source.first_wait``, at most ``pipeline_most`` seconds), times this, would bring
    #: in what it has left frees its slot for the next range at once, so that the next
    #: request's round trip (and the helper's own to the origin) overlaps its last bytes
    #: instead of leaving the connection idle. 0: a slot is free only when its stream ended
    pipeline: float = 1.0
    pipeline_most: float = 0.5
    #: piece boundaries fall on multiples of this (a manifest's piece size: then most
    #: verifiable pieces come from one source, which is who to blame when one is bad)
    align: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.min_piece <= self.max_piece:
            raise ValueError("need 0 < min_piece <= max_piece")
        if min(self.silence, self.silence_gaps, self.silence_floor, self.silence_first) <= 0:
            raise ValueError("silence, silence_gaps, silence_floor, silence_first must be > 0")
        if self.min_steal <= 0 or self.stall_timeout <= 0 or self.max_failures < 1:
            raise ValueError("min_steal, stall_timeout and max_failures must be positive")
        if self.refresh < 0 or self.hedge < 0 or self.pipeline < 0 or self.pipeline_most < 0:
            raise ValueError("refresh, hedge, pipeline and pipeline_most must be >= 0")
        if self.hedge_late <= 0 or self.hedge_late_floor < 0:
            raise ValueError("need hedge_late > 0 and hedge_late_floor >= 0")
        if self.align < 1 or self.rescue_depth < 1:
            raise ValueError("align and rescue_depth must be >= 1")
        if self.max_broken < 1 or self.judge_window < self.max_broken:
            raise ValueError("need 1 <= max_broken <= judge_window")


class FailureKind(enum.Enum):
    RETRYABLE = "retryable"  # connection reset, timeout, 5xx
    RATE_LIMITED = "rate_limited"  # 429/503: wait retry_after, no blame
    BROKEN = "broken"  # the source answered wrongly
    STALLED = "stalled"  # no data for stall_timeout (decided by on_timer)
    CANCELLED = "cancelled"  # the driver gave up on it (no blame)


class SourceState(enum.Enum):
    ACTIVE = "active"  # holds at least one lease
    IDLE = "idle"  # usable, holds nothing
    BACKOFF = "backoff"  # failed recently; usable again after a delay
    BANNED = "banned"  # will not be used again for this download
    GONE = "gone"  # removed by the driver (crashed, left)


# --- actions: what the driver must do ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assign:
    """Start streaming ``range`` from ``source_id``; report with ``lease_id``."""

    lease_id: int
    source_id: str
    range: ByteRange
    duplicate: bool = False


class CancelCause(enum.Enum):
    """Why a lease was revoked (the ``reason`` text is for people; this is for code)."""

    STALLED = "stalled"  # no data for too long
    LOST_RACE = "lost_race"  # endgame: another copy of the piece finished first
    BANNED = "banned"  # its source was banned
    GONE = "gone"  # its source died or left


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the stream of ``lease_id`` now; do not report on it any more."""

    lease_id: int
    source_id: str
    reason: str  # for people
    cause: CancelCause  # for code


@dataclass(frozen=True, slots=True)
class Ban:
    """Do not use ``source_id`` again for this download."""

    source_id: str
    reason: str


Action = Assign | Cancel | Ban


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to ``on_data``: write ``write`` (None: nothing); stop if ``finished``;
    ``ending``: the stream is about to end and its slot was freed for the next range (call
    ``poll``; told once per lease: see "pipelining" in ``core.scheduler``)."""

    write: ByteRange | None
    finished: bool
    actions: tuple[Action, ...] = ()
    ending: bool = False


# --- snapshots ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    lease_id: int
    source_id: str
    range: ByteRange  # the piece's current [frontier, end)
    cursor: int
    duplicate: bool
    started: float


@dataclass(frozen=True, slots=True)
class SourceInfo:
    source_id: str
    state: SourceState
    slots: int
    active_leases: int
    received: int  # bytes streamed (including duplicates that lost)
    claimed: int  # bytes that ended up in the file
    rate: float  # bytes/s over the last few seconds
    failures: int
    segments: tuple[ByteRange, ...]  # which parts of the file this source delivered
    ban_reason: str | None
    #: its streams *we* ended before the end of the range they asked for (split by a steal
    #: or a rescue, lost an endgame race, cancelled): on an origin link each one wasted what
    #: the origin had already sent into it (docs/fetch-once.md §9.1)
    cut: int = 0
    #: the ranges it was asked for (leases: new pieces, steals, copies, rescues); each is a
    #: request of its own (to a helper: a signed request, and its own request to the origin)
    ranges: int = 0
    #: seconds its ranges waited for their first data, summed: a request's round trips,
    #: and for a helper also what the engine's bulk reads hold back before the first report
    #: (up to ~0.5 s of its stream: ``net.lowat``), so not all of it is idle link
    waited: float = 0.0
    #: of its ``ranges``, those asked for while a stream of it was about to end (pipelined:
    #: their waits overlapped that stream's last bytes; ``SchedulerConfig.pipeline``)
    ahead: int = 0


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    size: int
    done: int
    missing: int
    leased: int
    complete: bool
    in_endgame: bool
    sources: tuple[SourceInfo, ...]
    leases: tuple[LeaseInfo, ...]
    reassigned_bytes: int  # bytes given back to `missing` after a failure
    steals: int
    duplicates: int
