"""Which bytes a source with an idle slot should fetch next (aria2's ``PieceSelector``).

Theory of operation
-------------------
``Selector.pick`` looks at the ledger (``core.pieces``) and the sources (``core.sources``) and
answers with a ``Pick``; it changes nothing (the scheduler carries the pick out). In order:

* **Frontier rescue.** The whole-file hash can only follow the contiguous prefix of claimed
  bytes, so a slow stream on a low piece makes everything beyond it wait to be hashed after
  the last byte lands. When ``rescue_backlog`` bytes (at most an eighth of the file) are
  claimed beyond such a piece and its holder needs more than ``1.5 * rescue_keep`` seconds to
  finish it, an idle slot about as fast as the holder takes all of the piece but the holder's
  next ``rescue_keep`` seconds (a ``Split``); a faster slot, if too little is left to split,
  gets a ``Duplicate`` of it (as in the endgame). Either way before it takes new work.
* **Missing bytes** come next, lowest first, in pieces sized so that every slot gets about
  ``pieces_per_slot`` of them (``TakeMissing``).

  *Partial availability* (``core.sources``, issue #15): a source that may serve only some
  ranges (a LAN holder) takes the lowest missing bytes *within* them, and is never given a
  steal, duplicate or rescue outside them either (with nothing missing within them, it
  goes on to steal and duplicate within them, even while other bytes are missing); missing
  bytes no such source can serve wait for the sources that may serve any byte. Those, in
  turn, take the lowest missing bytes that no restricted source alive can serve, and only
  when there are none the lowest missing bytes (the holders may be slow, or go). With no
  restricted source alive all of this is the plain rule above.
* **Stealing.** When nothing is missing, the largest remaining piece in flight is split
  (aria2's halving, weighted by the two sources' rates): the holder keeps ``[frontier,
  split)``, the thief gets ``[split, end)``.
* **Endgame.** When nothing can be split any more, an idle source that is faster than a
  piece's holder gets a ``Duplicate`` of ``[frontier, end)``; both stream, whichever is ahead
  claims the bytes, the first to reach the end wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmget.core.pieces import Lease, Piece, PieceMap, align_up
from swarmget.core.ranges import ByteRange
from swarmget.core.scheduling import SchedulerConfig
from swarmget.core.sources import Source, SourceBook


@dataclass(frozen=True, slots=True)
class TakeMissing:
    """Lease the first ``max_length`` missing bytes as a new piece."""

    max_length: int
    #: take them from this run of missing bytes (None: from the lowest one)
    within: ByteRange | None = None


@dataclass(frozen=True, slots=True)
class Split:
    """Cut ``piece`` at ``at`` and lease ``[at, end)`` (a steal, or a rescue)."""

    piece: Piece
    at: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Lease a second copy of ``piece``'s ``[frontier, end)`` (the endgame, or a rescue)."""

    piece: Piece


Pick = TakeMissing | Split | Duplicate


class Selector:
    """Picks work for one source at a time; see the module docstring."""

    def __init__(self, config: SchedulerConfig, pieces: PieceMap, sources: SourceBook) -> None:
        self.config = config
        self.pieces = pieces
        self.sources = sources

    def pick(self, src: Source, now: float) -> Pick | None:
        """What ``src`` (with an idle slot) should fetch next; None: nothing worth it."""
        rescue = self._rescue_frontier(src, now)
        if rescue is not None:
            return rescue
        take = self._take_missing(src)
        if take is not None:
            return take
        if self.config.steal:
            stolen = self._steal(src, now)
            if stolen is not None:
                return stolen
        if self.config.endgame:
            return self._duplicate(src, now)
        return None

    # --- new pieces ----------------------------------------------------------------------------

    def _take_missing(self, src: Source) -> TakeMissing | None:
        """Missing bytes for ``src`` (see "partial availability" in the module docstring)."""
        if src.available is not None:
            run = self.pieces.first_missing_in(src.available)
        elif self.sources.restricted():
            run = self.pieces.first_missing_outside(self.sources.cover())
            run = run or self.pieces.first_missing()
        else:  # the plain rule, bit for bit
            first = self.pieces.first_missing()
            return None if first is None else TakeMissing(self._piece_length(*_span(first)))
        return None if run is None else TakeMissing(self._piece_length(*_span(run)), run)

    def _piece_length(self, start: int, available: int) -> int:
        """How many of the ``available`` missing bytes from ``start`` one piece takes."""
        slots = self.sources.alive_slots()
        target = self.pieces.missing_total() // max(1, slots * self.config.pieces_per_slot)
        size = max(self.config.min_piece, min(self.config.max_piece, target))
        if available - size < self.config.min_piece:
            size = available  # do not leave a sliver behind
        return align_up(start + size, self.config.align) - start

    # --- stealing ------------------------------------------------------------------------------

    def _steal(self, thief: Source, now: float) -> Split | None:
        """Split the largest single-copy piece in flight; the thief takes its far end."""
        candidates = [p for p in self.pieces.pieces() if len(p.leases) == 1]
        for piece in sorted(candidates, key=lambda p: p.remaining, reverse=True):
            split = self._split_point(piece, thief, now)
            if split is not None and thief.may_serve(ByteRange(split, piece.end)):
                return Split(piece, split)
        return None

    def _split_point(self, piece: Piece, thief: Source, now: float) -> int | None:
        holder = self.pieces.holder(piece)
        if holder.cursor != piece.frontier:
            return None
        r_hold = holder.rate(now)
        r_thief = thief.slot_rate(now)
        share = 0.5
        if r_hold and r_thief:
            share = min(0.9, max(0.1, r_hold / (r_hold + r_thief)))
        split = align_up(piece.frontier + int(piece.remaining * share), self.config.align)
        keep = split - piece.frontier
        if keep < self.config.min_steal or piece.end - split < self.config.min_steal:
            return None
        return split

    # --- endgame -------------------------------------------------------------------------------

    def _duplicate(self, src: Source, now: float) -> Duplicate | None:
        """Endgame: copy the slowest-to-finish piece onto this idle, faster source."""
        best: tuple[float, Piece] | None = None
        mine = self._pieces_of(src)
        for piece in self.pieces.pieces():
            if len(piece.leases) != 1 or piece.id in mine or not piece.remaining:
                continue
            if not src.may_serve(ByteRange(piece.frontier, piece.end)):
                continue
            holder = self.pieces.holder(piece)
            eta = self._eta(holder, piece, now)
            if eta < self.config.endgame_min_eta or not self._faster(src, holder, now):
                continue
            if best is None or eta > best[0]:
                best = (eta, piece)
        return None if best is None else Duplicate(best[1])

    # --- frontier rescue -----------------------------------------------------------------------

    def _rescue_frontier(self, src: Source, now: float) -> Pick | None:
        """Help the lowest slow piece with ``rescue_backlog`` (or size / 8) claimed bytes
        beyond it and more than ``1.5 * rescue_keep`` seconds to go for its holder."""
        config = self.config
        if not config.rescue_backlog or src.slot_rate(now) is None:
            return None  # a source not measured yet is no rescue
        size = self.pieces.size
        first_missing = self.pieces.first_missing()
        limit = size if first_missing is None else first_missing.start
        threshold = min(config.rescue_backlog, max(1, size // 8))
        done = self.pieces.claimed_ranges()  # sorted, disjoint
        done_total = sum(r.length for r in done)
        soon = max(config.endgame_min_eta, 1.5 * config.rescue_keep)
        mine = self._pieces_of(src)
        in_flight = sorted(
            (p for p in self.pieces.pieces() if p.remaining), key=lambda p: p.frontier
        )
        i = before = 0  # before: claimed bytes in done[:i], all below the piece's frontier
        for piece in in_flight:
            if piece.frontier > limit:
                break  # unleased bytes come first: the next assignment takes them
            while i < len(done) and done[i].end <= piece.frontier:
                before += done[i].length
                i += 1
            partial = piece.frontier - done[i].start if i < len(done) else 0
            beyond = done_total - before - max(0, partial)
            if beyond < threshold:
                break  # later pieces hold up even less
            if len(piece.leases) != 1 or piece.id in mine:
                continue
            holder = self.pieces.holder(piece)
            if self._eta(holder, piece, now) <= soon:
                continue  # e.g. what a rescue left it: let it finish
            rescue = self._rescue(src, piece, holder, now)
            if rescue is not None and _fits(src, rescue):
                return rescue
        return None

    def _rescue(
        self, src: Source, piece: Piece, holder: Lease, now: float
    ) -> Split | Duplicate | None:
        """Split ``piece`` if ``src`` is about as fast as its holder (the two then work side
        by side), else duplicate it if ``src`` is faster; None if neither is worth it."""
        mine, theirs = src.slot_rate(now), holder.rate(now)
        if holder.cursor == piece.frontier and (not theirs or (mine or 0) >= 0.8 * theirs):
            ahead = int((theirs or 0) * self.config.rescue_keep)
            split = align_up(piece.frontier + max(self.config.min_steal, ahead), self.config.align)
            if piece.end - split >= self.config.min_steal:
                return Split(piece, split)
        if not self._faster(src, holder, now):
            return None
        return Duplicate(piece)

    # --- comparing speeds ----------------------------------------------------------------------

    def _pieces_of(self, src: Source) -> set[int]:
        return {self.pieces.lease(i).piece_id for i in src.leases}

    def _eta(self, holder: Lease, piece: Piece, now: float) -> float:
        rate = holder.rate(now)
        if not rate:
            return float("inf") if now - holder.started > self.config.endgame_min_eta else 0.0
        return piece.remaining / rate

    def _faster(self, src: Source, holder: Lease, now: float) -> bool:
        mine = src.slot_rate(now)
        theirs = holder.rate(now)
        if theirs is None or theirs == 0:
            return True
        return mine is None or mine > theirs * 1.2


def _span(run: ByteRange) -> tuple[int, int]:
    return run.start, run.length


def _fits(src: Source, pick: Split | Duplicate) -> bool:
    """Whether ``src`` may serve what ``pick`` would lease it."""
    start = pick.at if isinstance(pick, Split) else pick.piece.frontier
    return src.may_serve(ByteRange(start, pick.piece.end))
