"""Which bytes a source with an idle slot should fetch next (aria2's ``PieceSelector``).

Theory of operation
-------------------
``Selector.pick`` looks at the ledger (``core.pieces``) and the sources (``core.sources``) and
answers with a ``Pick``; it changes nothing (the scheduler carries the pick out). A *suspect*
source (one whose lease stalled, ``core.sources``) only ever gets a ``min_piece`` probe of
missing bytes. Otherwise, in order:

* **Frontier rescue.** The whole-file hash can only follow the contiguous prefix of claimed
  bytes, so a slow stream on a low piece makes everything beyond it wait to be hashed after
  the last byte lands. When ``rescue_backlog`` bytes (at most an eighth of the file) are
  claimed beyond such a piece and its holder needs more than ``1.5 * rescue_keep`` seconds to
  finish it, an idle slot about as fast as the holder takes all of the piece but the holder's
  next ``rescue_keep`` seconds (a ``Split``); a faster slot, if too little is left to split,
  gets a ``Duplicate`` of it (as in the endgame). Either way before it takes new work. A
  silent holder's piece (see the endgame) is copied whole, never split, and a steal passes
  it by. Only the lowest ``rescue_depth`` pieces in flight are looked at.
* **Missing bytes** come next, lowest first, in pieces sized so that every slot gets about
  ``pieces_per_slot`` of them (``TakeMissing``). The slots counted are those alive, or the
  slots the swarm is expected to have if more (``expected_slots``: the sources the hub listed
  that have not joined yet, issue #14): the first pieces are then sized for the swarm, not
  for the requester alone, so helpers that join a moment later find missing bytes to take
  instead of a few large pieces in flight to wait on.

  *Partial availability* (``core.sources``, issue #15): a source that may serve only some
  ranges (a LAN holder) takes the lowest missing bytes *within* them, and is never given a
  steal, duplicate or rescue outside them either (with nothing missing within them, it
  goes on to steal and duplicate within them, even while other bytes are missing); missing
  bytes no such source can serve wait for the sources that may serve any byte. Those, in
  turn, take the lowest missing bytes that no restricted source alive can serve, and only
  when there are none the lowest missing bytes (the holders may be slow, or go). With no
  restricted source alive all of this is the plain rule above.

  *Restricted sources* (issue #15, round 3): a restricted source's piece is at most its
  share of the run it takes from: the run's length over its free slots (this one
  included), so the grant of a member's origin link (4 MiB for 4 connections) becomes one
  piece per connection, each ending where the grant ends, instead of a piece sized on the
  whole file (2.5-3.5 MiB) and a sliver, which the idle connections then split. And a
  restricted source never *steals* from itself: its connections share its one link (a
  member's origin link, a holder's LAN port), so a split among them gains no rate, and it
  cuts an origin stream short: what the origin had sent into it (socket buffers, a
  shaper's queue: 0.8-1.75 MiB on the testbed) is lost. Its idle slots wait for more
  grants (or steal from other sources). A LAN holder (``whole_runs``) is not held back
  by round trips to a distant origin, nor faster with more streams: its piece may take a
  whole run of what it has (capped as any piece), one request where a share per free
  slot made three, each signed and checked, and each a slot the holder shares with
  every other requester (who are refused "busy" when they are all taken).
* **Stealing.** When nothing is missing, the largest remaining piece in flight is split
  (aria2's halving, weighted by the two sources' rates): the holder keeps ``[frontier,
  split)``, the thief gets ``[split, end)``.
* **Endgame.** When nothing can be split any more, an idle source that is faster than a
  piece's *lead* gets a ``Duplicate`` of ``[frontier, end)``; all copies stream, whichever
  is ahead claims the bytes, the first to reach the end wins. The lead is the holder, or
  the fastest live copy once there are several (a piece whose copy went to a slow helper
  may get a faster one; none while a copy is not measured yet, unless, during the hedge,
  it is *late*: no first byte after ``hedge_late`` of its source's usual waits for one).
  The lead must need at least ``endgame_min_eta``, and the copier must finish first
  counting its usual wait for a first byte. A *silent* stream (no data, since its last,
  for ``silence_gaps`` of its source's usual gaps between reports; since its start, for
  ``silence_first`` of its source's usual waits for a first byte; within
  ``[silence_floor, silence]`` seconds) counts as rate 0 (a hung helper's windowed rate
  only fades over seconds), and a piece whose copies are all silent may get one more. A
  *quiet* source (it holds work, all silent: ``core.sources``) gets nothing.
* **Hedge.** Once nothing is missing and the bytes still leased are at most what the swarm
  delivers in ``hedge`` seconds, a piece with one copy may get a second from any idle
  source that has delivered (longest to finish first, no race to win): a holder that hangs
  at the very end would otherwise hold the download for its silence and then a copy's
  whole stream. It costs at most ``hedge`` seconds of the swarm's bytes. A hedge copy
  that went to a helper which hung just then is *late* before it is silent (a beat or two
  rather than ``silence_floor``): another idle source may then copy the piece.

**Cost.** What these rules read of the ledger (the pieces a rescue may help, the pieces by
size for stealing, the pieces worth a copy by time to finish) is worked out once per
``config.refresh`` seconds and kept (``_Views``); each item is checked again against the
ledger when it is read (still there, same holder, one copy, still slow enough), and those
no longer valid at the front are dropped, so a source that finds nothing costs O(1)
amortized. The scheduler does not ask a source that found nothing again until the views are
worked out anew, bytes become missing, or it frees a slot. With ``refresh`` 0 the views are
worked out after every change of the ledger (the decisions of before, at O(pieces) per
event). The rescue list reads the ledger's pieces in order of start and its claimed total,
both kept up to date on events (``PieceMap``), and at most ``rescue_depth`` pieces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from swarmget.core.kept import Kept as _Kept
from swarmget.core.kept import Lazy as _Lazy
from swarmget.core.pieces import Lease, Piece, PieceMap, align_up
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduling import SchedulerConfig
from swarmget.core.sources import Source, SourceBook


@dataclass(frozen=True, slots=True)
class TakeMissing:
    """Lease the first ``max_length`` missing bytes as a new piece."""

    max_length: int
    #: take them from this run of missing bytes (None: from the lowest one)
    within: ByteRange | None = None
    #: the owner's reservation: its stream was on its way before it was asked
    reserved: bool = False


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
        self._seen = _Views()
        #: the slots the swarm is expected to have (0: no expectation), see the docstring
        self.expected_slots = 0
        #: moves on each time the views are worked out again
        self.epoch = 0
        self._told = 0
        #: lease id -> (what its time to finish depended on, the time to finish)
        self._etas: dict[int, tuple[tuple[float, int, float, int, int], float]] = {}
        #: source id -> the bytes kept for its first lease (``Scheduler.reserve``)
        self.reserved: dict[str, ByteRange] = {}
        #: their union: no other source takes missing bytes there
        self.reserved_cover = RangeSet()

    def reserve(self, owner: str, rng: ByteRange) -> None:
        """Keep ``rng`` for ``owner``'s next lease (see ``Scheduler.reserve``)."""
        old = self.reserved.pop(owner, None)
        if old is not None:
            self.reserved_cover.subtract(old)
        if self.reserved_cover.overlaps(rng):
            raise ValueError(f"{rng} overlaps another reservation")
        self.reserved[owner] = rng
        self.reserved_cover.add(rng)

    def unreserve(self, owner: str) -> ByteRange | None:
        """Drop ``owner``'s reservation; what was kept for it (None: nothing)."""
        rng = self.reserved.pop(owner, None)
        if rng is not None:
            self.reserved_cover.subtract(rng)
        return rng

    def refresh(self, now: float) -> bool:
        """Bring the views to ``now``; True if they were worked out again since the last
        call (then a source that found nothing may find something: ``retry_all``)."""
        self._views(now)
        changed, self._told = self.epoch != self._told, self.epoch
        return changed

    def next_refresh(self) -> float | None:
        """When the views are worked out again (None: after the next change, or never yet)."""
        built = self._seen.built
        return None if built is None or not self.config.refresh else built + self.config.refresh

    def _views(self, now: float) -> _Views:
        """What was worked out from the ledger (see ``_Views``): kept for
        ``config.refresh`` seconds from when it was (0: while the ledger and ``now`` are
        as they were)."""
        seen, every = self._seen, self.config.refresh
        if every:
            stale = seen.built is None or not seen.built <= now < seen.built + every
        else:
            stale = seen.version != self.pieces.version or seen.built != now
        if stale:
            self._seen = _Views(self.pieces.version, now)
            self.epoch += 1
        return self._seen

    def pick(self, src: Source, now: float) -> Pick | None:
        """What ``src`` (with an idle slot) should fetch next; None: nothing worth it."""
        if src.quiet(now, self.config):
            return None  # it holds work and shows no progress: nothing more for now
        if src.suspect:  # it stalled: a small probe of missing bytes, nothing held by others
            return self._take_missing(src, probe=True) if self._may_probe() else None
        if self.reserved:
            kept = self._reserved_for(src)
            if kept is not None:
                return kept
        rescue = self._rescue_frontier(src, now)
        if rescue is not None:
            return rescue
        take = self._take_missing(src)
        if take is None and self.reserved:
            take = self._take_forfeited(src)
        if take is not None or src.ahead_only():  # (a slot about to free: see there)
            return take
        if self.config.steal:
            stolen = self._steal(src, now)
            if stolen is not None:
                return stolen
        if self.config.endgame:
            return self._duplicate(src, now)
        return None

    # --- new pieces ----------------------------------------------------------------------------

    def _reserved_for(self, src: Source) -> TakeMissing | None:
        """``src``'s reservation, as its lease (once; what of it is still missing, the
        first run of it), if it has one and may serve any byte."""
        rng = self.unreserve(src.id)
        if rng is None or src.available is not None:
            return None
        run = self.pieces.first_missing_in(RangeSet([rng]))
        return None if run is None else TakeMissing(run.length, run, reserved=True)

    def _take_missing(self, src: Source, *, probe: bool = False) -> TakeMissing | None:
        """Missing bytes for ``src`` (see "partial availability" in the module docstring);
        ``probe``: a piece of ``min_piece`` only."""
        kept = self.reserved_cover
        if src.available is not None:
            allowed = src.available.difference(kept) if kept else src.available
            run = self.pieces.first_missing_in(allowed)
        elif self.sources.restricted():
            cover = self.sources.cover()
            if kept:
                cover.update(kept)
            run = self.pieces.first_missing_outside(cover)
            run = run or self._first_missing_unkept()
        else:  # the plain rule, bit for bit (but for bytes kept for a source on its way)
            first = self._first_missing_unkept()
            if first is None:
                return None
            length = self._piece_length(*_span(first), probe=probe)
            return TakeMissing(length, first if self.reserved_cover else None)
        if run is None:
            return None
        length = self._piece_length(*_span(run), probe=probe, share=_free_slots(src))
        return TakeMissing(length, run)

    def _take_forfeited(self, src: Source) -> TakeMissing | None:
        """Nothing else is missing but bytes kept for sources that have not joined (a
        listed helper whose health check has not answered, maybe never will: stopped,
        black-holed): ``src`` takes the first of them rather than idle while they wait;
        that owner's reservation is dropped (its lead goes unused). One owner at a time."""
        waiting = [
            (rng.start, owner)
            for owner, rng in self.reserved.items()
            if self.sources.get(owner) is None
        ]
        for _, owner in sorted(waiting):
            self.unreserve(owner)
            take = self._take_missing(src)
            if take is not None:
                return take
        return None

    def _first_missing_unkept(self) -> ByteRange | None:
        """The first run of missing bytes not kept for another source."""
        kept = self.reserved_cover
        return self.pieces.first_missing_outside(kept) if kept else self.pieces.first_missing()

    def _may_probe(self) -> bool:
        """A suspect source may take a probe while missing bytes are plentiful (a
        ``min_piece`` per slot alive besides it), or when every source alive is suspect: the
        last missing bytes go to sources that showed progress, or the end of the download
        waits for a probe on a helper that may well hang again."""
        config = self.config
        left = self.pieces.missing_total() - config.min_piece
        if left >= self.sources.alive_slots() * config.min_piece:
            return True
        return not self.sources.any_trusted()

    def _piece_length(
        self, start: int, available: int, *, probe: bool = False, share: int = 0
    ) -> int:
        """How many of the ``available`` missing bytes from ``start`` one piece takes;
        ``share``: at most a ``share``-th of them (a restricted source with that many free
        slots, see "restricted sources" in the module docstring)."""
        slots = max(self.sources.alive_slots(), self.expected_slots)
        target = self.pieces.missing_total() // max(1, slots * self.config.pieces_per_slot)
        if share:
            target = min(target, -(-available // share))
        size = max(self.config.min_piece, min(self.config.max_piece, target))
        if probe:
            size = self.config.min_piece
        if available - size < self.config.min_piece:
            size = available  # do not leave a sliver behind
        return align_up(start + size, self.config.align) - start

    # --- stealing ------------------------------------------------------------------------------

    def _steal(self, thief: Source, now: float) -> Split | None:
        """Split the largest single-copy piece in flight; the thief takes its far end."""
        views = self._views(now)
        if views.steal is None:
            found = [(p.remaining, p) for p in self.pieces.pieces() if len(p.leases) == 1]
            views.steal = _Kept(sorted(found, key=lambda x: x[0], reverse=True))
        floor = 2 * self.config.min_steal
        for remaining, piece in views.steal.valid(lambda x: self._stealable(x[1])):
            if remaining < floor:
                break  # neither part could be min_steal: nor of any smaller piece
            if piece.remaining < floor:
                continue
            holder = self.pieces.holder(piece)
            if self._silent(holder, now):
                continue  # its holder hangs: a copy takes all of it (the endgame), not half
            if thief.available is not None:
                if holder.source_id == thief.id:
                    continue  # a restricted source never splits its own stream (docstring)
                if not thief.may_serve(ByteRange(piece.end - self.config.min_steal, piece.end)):
                    continue  # nor could it serve any far end (it would be at least that)
            split = self._split_point(piece, thief, now)
            if split is not None and thief.may_serve(ByteRange(split, piece.end)):
                return Split(piece, split)
        return None

    def _stealable(self, piece: Piece) -> bool:
        """Still in the ledger with one copy (it may have changed since the views)."""
        return self.pieces.has(piece) and len(piece.leases) == 1

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
        """Endgame: copy the slowest-to-finish piece onto this idle, faster source (or,
        during the hedge, any piece with one copy onto this idle source)."""
        hedge = self._hedge(src, now)
        if hedge is not None or (src.first_data is None and self._hedging(now)):
            return hedge  # during the hedge, copies only for sources that delivered
        duplicable, slowest = self._duplicable(now)
        mine = src.slot_rate(now)
        if mine is not None and slowest is not None and mine <= slowest * 1.2:
            return None  # not faster than any holder
        owned = self._pieces_of(src)
        for _, piece, holder in duplicable.valid(lambda x: self._duplicable_now(*x[1:], now)):
            if piece.id in owned or not src.may_serve(ByteRange(piece.frontier, piece.end)):
                continue
            if self._faster(src, holder, now) and self._sooner(src, piece, holder, now):
                return Duplicate(piece)
        return None

    def _hedge(self, src: Source, now: float) -> Duplicate | None:
        """A second copy of a piece with one copy, longest to finish first, for an idle
        source that has delivered, once nothing is missing and the bytes still leased are
        at most what the swarm delivers in ``config.hedge`` seconds (see there)."""
        if src.first_data is None:
            return None  # never measured: it may be a helper that never delivers
        views = self._views(now)
        if views.hedge is None:
            views.hedge = _Kept(self._hedgeable(now) if self._hedging(now) else [])
        owned = self._pieces_of(src)
        mine, wait = src.slot_rate(now) or 0.0, src.first_wait or 0.0
        for _, piece, holder in views.hedge.valid(lambda x: self._single(x[1], x[2])):
            if piece.id in owned or (self._rate(holder, now) or 0.0) > mine:
                continue  # a hedge slower than its holder only helps if it hangs
            if not mine or wait + piece.remaining / mine > self.config.hedge:
                continue  # it would not be done within the hedge: leave it to a faster one
            if src.may_serve(ByteRange(piece.frontier, piece.end)):
                return Duplicate(piece)
        return None

    def _hedging(self, now: float) -> bool:
        """The hedge is on: nothing is missing and the bytes still leased are at most what
        the swarm delivers in ``config.hedge`` seconds (worked out once per views)."""
        views = self._views(now)
        if views.hedging is None:
            pieces, hedge = self.pieces, self.config.hedge
            views.hedging = bool(
                hedge
                and not pieces.missing_total()
                and pieces.lease_count()
                and self.sources.rate_reaches(now, pieces.leased_total() / hedge)
            )
        return views.hedging

    def _hedgeable(self, now: float) -> list[tuple[float, Piece, Lease]]:
        """The pieces with one copy, longest to finish first."""
        pieces = self.pieces
        found = []
        for piece in pieces.pieces():
            if piece.remaining and len(piece.leases) == 1:
                holder = pieces.holder(piece)
                found.append((self._eta(holder, piece, now), piece, holder))
        found.sort(key=lambda x: -x[0])
        return found

    def _single(self, piece: Piece, holder: Lease) -> bool:
        """``piece`` is still in the ledger with ``holder`` its one copy."""
        return bool(piece.remaining) and self.pieces.has(piece) and piece.leases == [holder.id]

    def _sooner(self, src: Source, piece: Piece, lead: Lease, now: float) -> bool:
        """A copy on ``src`` would finish ``piece`` before ``lead`` does, counting its
        usual wait for a first byte (a round trip, on a real network): else it only costs
        bytes. True when either is not measured yet."""
        mine, wait = src.slot_rate(now), src.first_wait
        if not mine or wait is None:
            return True
        return wait + piece.remaining / mine < self._eta(lead, piece, now)

    def _duplicable(self, now: float) -> tuple[_Kept[tuple[float, Piece, Lease]], float | None]:
        """The pieces worth a copy, longest to finish first (ties: oldest), each with its
        lead (``_lead``), and the slowest lead's rate (None if some lead has no rate, or
        none is there)."""
        views = self._views(now)
        if views.duplicable is None:
            found = []
            for piece in self.pieces.pieces():
                lead = self._lead(piece, now)
                if lead is not None and self._duplicable_now(piece, lead, now):
                    found.append((self._eta(lead, piece, now), piece, lead))
            found.sort(key=lambda x: -x[0])
            views.duplicable = _Kept(found)
            rates = [r for _, _, h in found if (r := self._rate(h, now))]
            views.slowest = min(rates) if rates and len(rates) == len(found) else None
        return views.duplicable, views.slowest

    def _duplicable_now(self, piece: Piece, lead: Lease, now: float) -> bool:
        """``piece`` is in the ledger with ``lead`` its lead still, which needs at least
        ``endgame_min_eta`` to finish it."""
        if not piece.remaining or not self.pieces.has(piece) or not piece.leases:
            return False
        if self._lead(piece, now) is not lead:
            return False
        return self._eta(lead, piece, now) >= self._min_eta(now)

    def _min_eta(self, now: float) -> float:
        """How long a lead must need for a copy: ``endgame_min_eta``; during the hedge, any
        time (the copy must still finish first, ``_sooner``): its bytes are bounded."""
        return 0.0 if self._hedging(now) else self.config.endgame_min_eta

    def _lead(self, piece: Piece, now: float) -> Lease | None:
        """The copy of ``piece`` a new copy has to beat: its holder if it has one copy or
        all its copies are silent; else the fastest live copy, if every live copy has a
        measured rate (None: a copy not measured yet, wait for it). So a piece whose copy
        went to a slow helper may get a faster one, never one slower than a live copy."""
        if len(piece.leases) == 1:
            return self.pieces.holder(piece)
        rates = [
            (0.0 if self._late(x, now) else self._rate(x, now), x)
            for x in map(self.pieces.lease, piece.leases)
        ]
        live = [(r, x) for r, x in rates if r != 0.0]
        if not live:
            return self.pieces.holder(piece)  # all hung: a copy may take it
        best: tuple[float, Lease] | None = None
        for rate, lease in live:
            if rate is None:
                return None
            if best is None or rate > best[0]:
                best = (rate, lease)
        return None if best is None else best[1]

    def _late(self, lease: Lease, now: float) -> bool:
        """During the hedge: ``lease`` has not delivered after ``config.hedge_late`` of its
        source's usual waits for a first byte, and at least ``hedge_late_floor`` (see
        there)."""
        if lease.deliveries or not self._hedging(now):
            return False
        wait = self.sources[lease.source_id].first_wait
        if wait is None:
            return False
        late = max(self.config.hedge_late * wait, self.config.hedge_late_floor)
        return now - lease.started >= late

    # --- frontier rescue -----------------------------------------------------------------------

    def _rescue_frontier(self, src: Source, now: float) -> Pick | None:
        """Help the lowest slow piece with ``rescue_backlog`` (or size / 8) claimed bytes
        beyond it and more than ``1.5 * rescue_keep`` seconds to go for its holder."""
        if not self.config.rescue_backlog or src.slot_rate(now) is None:
            return None  # a source not measured yet is no rescue
        views = self._views(now)
        if views.rescuable is None:
            found = self._rescuable(now)  # read lazily: only while the ledger is unchanged
            views.rescuable = _Lazy(found) if not self.config.refresh else _Kept(list(found))
        mine = self._pieces_of(src)
        for piece, holder in views.rescuable.valid(lambda x: self._rescuable_now(*x, now)):
            if piece.id in mine:
                continue
            rescue = self._rescue(src, piece, holder, now)
            if rescue is not None and _fits(src, rescue):
                return rescue
        return None

    def _rescuable(self, now: float) -> Iterator[tuple[Piece, Lease]]:
        """The single-copy pieces a rescue may help, lowest first (whoever asks), among the
        lowest ``config.rescue_depth`` pieces in flight; worked out as far as the sources
        asking need. Costs O(depth) ledger reads (the ledger keeps its pieces by start and
        its claimed total), not a sort of every piece."""
        config = self.config
        size = self.pieces.size
        first_missing = self.pieces.first_missing()
        limit = size if first_missing is None else first_missing.start
        threshold = min(config.rescue_backlog, max(1, size // 8))
        done = self.pieces.claimed_ranges()  # sorted, disjoint
        done_total = self.pieces.claimed_total()
        soon = max(config.endgame_min_eta, 1.5 * config.rescue_keep)
        i = before = 0  # before: claimed bytes in done[:i], all below the piece's frontier
        for depth, piece in enumerate(self.pieces.pieces_by_start()):
            if piece.frontier > limit or depth >= config.rescue_depth:
                break  # unleased bytes come first: the next assignment takes them
            if not piece.remaining:
                continue
            while i < len(done) and done[i].end <= piece.frontier:
                before += done[i].length
                i += 1
            partial = piece.frontier - done[i].start if i < len(done) else 0
            beyond = done_total - before - max(0, partial)
            if beyond < threshold:
                break  # later pieces hold up even less
            if len(piece.leases) != 1:
                continue
            holder = self.pieces.holder(piece)
            if self._eta(holder, piece, now) <= soon:
                continue  # e.g. what a rescue left it: let it finish
            yield piece, holder

    def _rescuable_now(self, piece: Piece, holder: Lease, now: float) -> bool:
        """What ``_rescuable`` found is still so: ``piece`` is in the ledger, ``holder``
        its one copy, and it needs more than ``1.5 * rescue_keep`` (what a rescue left it
        needs less: let it finish)."""
        if not piece.remaining or not self.pieces.has(piece) or piece.leases != [holder.id]:
            return False
        soon = max(self.config.endgame_min_eta, 1.5 * self.config.rescue_keep)
        return self._eta(holder, piece, now) > soon

    def _rescue(
        self, src: Source, piece: Piece, holder: Lease, now: float
    ) -> Split | Duplicate | None:
        """Split ``piece`` if ``src`` is about as fast as its holder (the two then work side
        by side), else duplicate it if ``src`` is faster; None if neither is worth it."""
        mine, theirs = src.slot_rate(now), self._rate(holder, now)
        if theirs == 0.0:
            return Duplicate(piece)  # a silent holder: take it all, it may never come back
        if holder.cursor == piece.frontier and (not theirs or (mine or 0) >= 0.8 * theirs):
            ahead = int((theirs or 0) * self.config.rescue_keep)
            split = align_up(piece.frontier + max(self.config.min_steal, ahead), self.config.align)
            if piece.end - split >= self.config.min_steal:
                return Split(piece, split)
        if not self._faster(src, holder, now):
            return None
        return Duplicate(piece)

    # --- comparing speeds ----------------------------------------------------------------------

    def _rate(self, holder: Lease, now: float) -> float | None:
        """``holder``'s rate, but 0 once it is silent (``_silent``): a hung stream's windowed
        rate only fades over seconds, and its piece should not wait."""
        if self._silent(holder, now):
            return 0.0
        return holder.rate(now)

    def _silent(self, holder: Lease, now: float) -> bool:
        """No data from ``holder`` (since its last, or its start) for its source's silence:
        ``config.silence``, or fewer seconds for a source whose streams report steadily
        (``SchedulerConfig.silence_gaps``)."""
        src = self.sources[holder.source_id]
        waited = now - holder.last_data
        return waited >= src.silence(self.config, started=holder.deliveries > 0)

    def _pieces_of(self, src: Source) -> set[int]:
        return {self.pieces.lease(i).piece_id for i in src.leases}

    def _eta(self, holder: Lease, piece: Piece, now: float) -> float:
        """Seconds ``holder`` needs to finish ``piece``; kept while nothing it depends on
        changed (the views are rebuilt after each change, most pieces are as they were)."""
        key = (now, holder.received, holder.last_data, piece.frontier, piece.end)
        seen = self._etas.get(holder.id)
        if seen is not None and seen[0] == key:
            return seen[1]
        rate = self._rate(holder, now)
        if rate == 0.0 and self._silent(holder, now):
            eta = float("inf")  # it hangs: judged by its silence, no further wait
        elif not rate:
            eta = float("inf") if now - holder.started > self.config.endgame_min_eta else 0.0
        else:
            eta = piece.remaining / rate
        if len(self._etas) > 4 * self.pieces.lease_count() + 64:
            self._etas.clear()  # forget leases that are gone
        self._etas[holder.id] = (key, eta)
        return eta

    def _faster(self, src: Source, holder: Lease, now: float) -> bool:
        mine = src.slot_rate(now)
        theirs = self._rate(holder, now)
        if theirs is None or theirs == 0:
            return True
        return mine is None or mine > theirs * 1.2


@dataclass(slots=True)
class _Views:
    """What ``pick`` works out from the ledger once per change of it (``PieceMap.version``)
    and time, not once per source asking: within one poll the ledger only changes when a pick
    is carried out, so the sources without work cost O(1) each, not O(pieces log pieces)."""

    version: int = -1
    #: when they were worked out (None: not yet)
    built: float | None = None
    rescuable: _Lazy[tuple[Piece, Lease]] | _Kept[tuple[Piece, Lease]] | None = None
    steal: _Kept[tuple[int, Piece]] | None = None
    duplicable: _Kept[tuple[float, Piece, Lease]] | None = None
    slowest: float | None = None
    hedge: _Kept[tuple[float, Piece, Lease]] | None = None
    hedging: bool | None = None


def _free_slots(src: Source) -> int:
    """The slots a restricted source may still fill (this one included); 0: not
    restricted (its pieces are sized on the whole download); 1 for a source that takes
    whole runs (``Source.whole_runs``)."""
    if src.available is None:
        return 0
    if src.whole_runs:
        return 1
    return max(1, src.capacity() - src.occupied())


def _span(run: ByteRange) -> tuple[int, int]:
    return run.start, run.length


def _fits(src: Source, pick: Split | Duplicate) -> bool:
    """Whether ``src`` may serve what ``pick`` would lease it."""
    start = pick.at if isinstance(pick, Split) else pick.piece.frontier
    return src.may_serve(ByteRange(start, pick.piece.end))
