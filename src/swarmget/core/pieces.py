"""Who owns which bytes of the file: the scheduler's ledger of pieces and leases.

Theory of operation
-------------------
Every byte of ``[0, size)`` is in exactly one of three states (``ByteState``)::

    MISSING  nobody fetches it
    LEASED   in the unclaimed tail ``[frontier, end)`` of a piece that a lease streams
    CLAIMED  a stream delivered it and the scheduler told its driver to write it

CLAIMED is not "on disk": the scheduler is never told when a write lands. The driver keeps
that (the part file's ``written`` ranges) and hands it back as the claimed bytes of a new
ledger when a download resumes. A LEASED byte is neither: it may never arrive.

A *piece* is a byte range ``[start, end)`` with a ``frontier``: the bytes below it are
claimed. A *lease* is one stream of one source over a piece, from its ``cursor``; it says
who holds the bytes (``source_id``) and since when (``started``, ``last_data``). A piece has
one lease, or more in the endgame (duplicates). The transitions::

    MISSING --lease_missing--> LEASED --deliver--> CLAIMED
    LEASED  --release (the last lease of its piece goes)--> MISSING   (counted as reassigned)
    CLAIMED --invalidate (the bytes were bad)--> MISSING               (counted as reassigned)

``split`` cuts a piece in two leased pieces (stealing); it moves no byte between states.
Claims only ever move a frontier forward, so a byte is claimed once, whoever delivers it first.
This module decides nothing: which piece to lease is ``selection``'s business, and ids come
from the caller.
"""

from __future__ import annotations

import bisect
import enum
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.rates import RateWindow


class ByteState(enum.Enum):
    MISSING = "missing"
    LEASED = "leased"
    CLAIMED = "claimed"


@dataclass(slots=True)
class Piece:
    """``[start, end)``; ``[start, frontier)`` is claimed, ``[frontier, end)`` is leased."""

    id: int
    start: int
    end: int
    frontier: int
    leases: list[int] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.end - self.frontier


@dataclass(slots=True)
class Lease:
    """One stream of ``source_id`` over a piece, at ``cursor``; started at ``started``."""

    id: int
    source_id: str
    piece_id: int
    cursor: int
    started: float
    last_data: float
    duplicate: bool
    received: int = 0
    samples: RateWindow = field(default_factory=RateWindow)
    #: its answer was recorded as good (bytes flowed) in its source's window
    answered: bool = False
    #: how many reports of data it made, and when the first came (None: none yet)
    deliveries: int = 0
    first_data: float | None = None
    #: its stream was on its way before it was asked (a reservation): its first wait says
    #: nothing of its source's usual one
    early: bool = False

    def rate(self, now: float) -> float | None:
        """Bytes/s of this stream over the last few seconds (None: too early to tell)."""
        return self.samples.rate(now, self.started)

    def gap(self) -> float | None:
        """The mean time between two of its reports of data (None: fewer than two)."""
        if self.first_data is None or self.deliveries < 2:
            return None
        return (self.last_data - self.first_data) / (self.deliveries - 1)


def align_up(offset: int, align: int) -> int:
    return -(-offset // align) * align


class PieceMap:
    """The state of every byte of a file of ``size`` bytes, and the leases that hold them."""

    def __init__(self, size: int, claimed: RangeSet | None = None) -> None:
        whole = ByteRange(0, size)
        self.size = size
        self._claimed = RangeSet(
            x for r in (claimed or ()) if (x := r.intersect(whole)) is not None
        )
        self._missing = self._claimed.missing(whole)
        self._missing_total = self._missing.total()
        self._pieces: dict[int, Piece] = {}
        #: (start, id) of every piece, sorted: pieces are disjoint, so this is their order
        #: by frontier too (a split keeps the start, a new piece is inserted)
        self._by_start: list[tuple[int, int]] = []
        self._claimed_total = self._claimed.total()
        self._leases: dict[int, Lease] = {}
        #: the leases by ``last_data``, oldest first (time only moves forward, so a lease
        #: that reports moves to the end): the stalled ones are at the front
        self._by_data: OrderedDict[int, Lease] = OrderedDict()
        #: bytes given back to MISSING after a failure or a bad check
        self.reassigned = 0
        #: moves on at every change (what is worked out from the ledger can key on it)
        self.version = 0
        #: moves on when bytes become missing again (a lease given back, bad bytes)
        self.missing_version = 0

    # --- queries -------------------------------------------------------------------------------

    def claimed(self) -> RangeSet:
        return self._claimed.copy()

    def claimed_ranges(self) -> list[ByteRange]:
        """The claimed bytes as sorted, disjoint ranges."""
        return list(self._claimed)

    def claimed_total(self) -> int:
        return self._claimed_total

    def missing_total(self) -> int:
        return self._missing_total

    def leased_total(self) -> int:
        return sum(p.remaining for p in self._pieces.values())

    def first_missing(self) -> ByteRange | None:
        return self._missing.first()

    def first_missing_in(self, allowed: RangeSet) -> ByteRange | None:
        """The lowest run of missing bytes that lies within ``allowed``."""
        return self._missing.first_common(allowed)

    def first_missing_outside(self, cover: RangeSet) -> ByteRange | None:
        """The lowest run of missing bytes that lies outside ``cover``."""
        return self._missing.first_outside(cover)

    def missing_outside(self, cover: RangeSet) -> RangeSet:
        """The missing bytes that lie outside ``cover``."""
        return self._missing.difference(cover)

    def missing_ranges(self) -> list[ByteRange]:
        return list(self._missing)

    def is_complete(self) -> bool:
        return self._claimed_total == self.size

    def is_duplicated(self) -> bool:
        """Some piece is streamed by more than one lease."""
        return any(len(p.leases) > 1 for p in self._pieces.values())

    def state_at(self, offset: int) -> ByteState:
        """The state of the byte at ``offset`` (in ``[0, size)``)."""
        if not 0 <= offset < self.size:
            raise ValueError(f"offset {offset} is outside [0, {self.size})")
        if self._claimed.contains(ByteRange(offset, offset + 1)):
            return ByteState.CLAIMED
        if self._missing.contains(ByteRange(offset, offset + 1)):
            return ByteState.MISSING
        return ByteState.LEASED

    def pieces(self) -> Iterator[Piece]:
        return iter(self._pieces.values())

    def pieces_by_start(self) -> Iterator[Piece]:
        """The pieces, lowest first (read lazily: do not change the ledger meanwhile)."""
        for _, piece_id in self._by_start:
            yield self._pieces[piece_id]

    def has(self, piece: Piece) -> bool:
        """``piece`` is (still) in the ledger."""
        return self._pieces.get(piece.id) is piece

    def piece(self, piece_id: int) -> Piece:
        return self._pieces[piece_id]

    def leases(self) -> Iterator[Lease]:
        return iter(self._leases.values())

    def stalled(self, now: float, timeout: float) -> list[Lease]:
        """The leases with no data for ``timeout`` seconds at ``now``, by id. Costs
        O(k log k) for k of them (the oldest first in ``_by_data``), not O(leases)."""
        out = []
        for lease in self._by_data.values():
            if now - lease.last_data < timeout:
                break
            out.append(lease)
        return sorted(out, key=lambda lease: lease.id)

    def oldest_data(self) -> float | None:
        """The earliest ``last_data`` of a lease (None: no lease). O(1)."""
        for lease in self._by_data.values():
            return lease.last_data
        return None

    def lease_count(self) -> int:
        return len(self._leases)

    def lease(self, lease_id: int) -> Lease:
        return self._leases[lease_id]

    def find_lease(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def holder(self, piece: Piece) -> Lease:
        """The first (the original) lease of ``piece``."""
        return self._leases[piece.leases[0]]

    def lease_range(self, lease: Lease) -> ByteRange:
        """What is left of the piece ``lease`` works on: ``[frontier, end)``."""
        piece = self._pieces[lease.piece_id]
        return ByteRange(piece.frontier, piece.end)

    # --- transitions ---------------------------------------------------------------------------

    def lease_missing(
        self,
        max_length: int,
        *,
        piece_id: int,
        lease_id: int,
        source_id: str,
        now: float,
        within: ByteRange | None = None,
    ) -> Lease:
        """Lease the first ``max_length`` missing bytes (or fewer) as a new piece; with
        ``within`` (a run of missing bytes), the first of ``within`` instead."""
        self.version += 1
        if within is None:
            rng = self._missing.pop_first(max_length)
        else:
            if not self._missing.contains(within) or within.is_empty():
                raise ValueError(f"{within} is not missing")
            rng = ByteRange(within.start, min(within.end, within.start + max_length))
            self._missing.subtract(rng)
        if rng is None:
            raise ValueError("nothing is missing")
        self._missing_total -= rng.length
        piece = self._new_piece(piece_id, rng.start, rng.end)
        return self.add_lease(piece, lease_id=lease_id, source_id=source_id, now=now)

    def split(self, piece: Piece, at: int, *, piece_id: int) -> Piece:
        """Cut ``piece`` at ``at``: it keeps ``[frontier, at)``, the new piece (with no lease
        yet) is ``[at, end)``."""
        self.version += 1
        if not piece.frontier < at < piece.end:
            raise ValueError(f"cannot split [{piece.frontier}, {piece.end}) at {at}")
        new = self._new_piece(piece_id, at, piece.end)
        piece.end = at
        return new

    def add_lease(
        self,
        piece: Piece,
        *,
        lease_id: int,
        source_id: str,
        now: float,
        cursor: int | None = None,
        duplicate: bool = False,
    ) -> Lease:
        """A new stream of ``source_id`` over ``piece`` from ``cursor`` (its frontier)."""
        self.version += 1
        start = piece.frontier if cursor is None else cursor
        lease = Lease(lease_id, source_id, piece.id, start, now, now, duplicate)
        self._leases[lease.id] = lease
        self._by_data[lease.id] = lease
        piece.leases.append(lease.id)
        return lease

    def deliver(self, lease: Lease, nbytes: int, now: float) -> ByteRange | None:
        """``lease``'s stream delivered its next ``nbytes``: claim those of them still
        leased (below nobody's frontier) and return them, the range to write."""
        self.version += 1
        got = ByteRange(lease.cursor, lease.cursor + nbytes)
        lease.cursor = got.end
        lease.last_data = now
        self._by_data.move_to_end(lease.id)
        lease.received += nbytes
        lease.deliveries += 1
        if lease.first_data is None:
            lease.first_data = now
        lease.samples.prune(now)
        lease.samples.add(now, nbytes)
        piece = self._pieces[lease.piece_id]
        write = got.intersect(ByteRange(piece.frontier, piece.end))
        if write is None:
            return None
        piece.frontier = write.end
        self._claimed.add(write)
        self._claimed_total += write.length
        return write

    def release(self, lease: Lease) -> None:
        """Forget a lease; give its piece's leased bytes back if nobody else works on it."""
        self.version += 1
        del self._leases[lease.id]
        del self._by_data[lease.id]
        piece = self._pieces[lease.piece_id]
        piece.leases.remove(lease.id)
        if piece.leases:
            return
        if piece.remaining:
            self._missing.add(ByteRange(piece.frontier, piece.end))
            self._missing_total += piece.remaining
            self.missing_version += 1
            self.reassigned += piece.remaining
        del self._pieces[piece.id]
        del self._by_start[bisect.bisect_left(self._by_start, (piece.start, piece.id))]

    def invalidate(self, rng: ByteRange) -> RangeSet:
        """The claimed bytes of ``rng`` turned out bad: make them missing; returns them."""
        self.version += 1
        bad = RangeSet(x for r in self._claimed if (x := r.intersect(rng)) is not None)
        for r in bad:
            self._claimed.subtract(r)
            self._missing.add(r)
        self._claimed_total -= bad.total()
        self._missing_total += bad.total()
        self.missing_version += 1
        self.reassigned += bad.total()
        return bad

    def _new_piece(self, piece_id: int, start: int, end: int) -> Piece:
        piece = Piece(piece_id, start, end, start)
        self._pieces[piece.id] = piece
        bisect.insort(self._by_start, (start, piece.id))
        return piece

    # --- checks --------------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise AssertionError unless claimed, missing and leased tile ``[0, size)``."""
        parts = [list(self._claimed), list(self._missing)]
        parts.append([ByteRange(p.frontier, p.end) for p in self._pieces.values() if p.remaining])
        flat = sorted(r for group in parts for r in group)
        pos = 0
        for r in flat:
            assert r.start == pos, f"gap or overlap at {pos}: {r}"
            pos = r.end
        assert pos == self.size, f"coverage ends at {pos}, size {self.size}"
        for lease in self._leases.values():
            assert lease.id in self._pieces[lease.piece_id].leases
        # the indexes kept on events agree with working them out again
        assert self._by_start == sorted((p.start, p.id) for p in self._pieces.values())
        assert self._claimed_total == self._claimed.total()
        assert self._missing_total == self._missing.total()
        assert set(self._by_data) == set(self._leases)

    def check_time_order(self) -> None:
        """Raise AssertionError unless ``_by_data`` is in order of ``last_data`` (it is if
        ``now`` never went back, as the scheduler is promised)."""
        times = [lease.last_data for lease in self._by_data.values()]
        assert times == sorted(times), "leases out of order of their last data"
