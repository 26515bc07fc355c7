"""Who fetches which part of one content from the origin, in a group that shares it (#15).

Theory of operation
-------------------
When several members of a group want the same content (``core.content.ContentKey``), every
byte should cross the origin links once. A ``ClaimBook`` (kept by the hub per content, one
per ``index_name()``; the hub never sees a byte of it) answers two questions:

* **What should my origin link fetch next?** ``claim(member, now=)`` *grants* the member
  a run of bytes from the *pool* (bytes nobody has and nobody was granted), the lowest it
  lacks first, sized so that every member gets about ``grants_per_member`` more grants
  from what is left (between ``min_grant`` and ``max_grant``, on ``align`` boundaries: a
  manifest's pieces then come from one origin link, who to blame when one is bad). The
  member's scheduler then lets its origin source serve those bytes (``availability_grew``).
* **Group endgame.** When the pool holds nothing a member lacks and its origin link has
  nothing left to fetch, ``steal(member, now=)`` grants it the far half of the largest run
  that another member was granted at least ``steal_after`` seconds ago and nobody has
  reported yet (all of it when a half would be shorter than ``min_grant``: a second copy,
  like the scheduler's endgame). A slow link then no longer holds everyone up at the end,
  and members as fast as the thief (whose grants are young) keep theirs. Call it only for
  an idle link: a member still busy with its own grants would fetch bytes twice for
  nothing. The original grantee keeps its grant (it fetches lowest first, so it reaches
  the far half last, usually after the thief reported it); each byte is granted to at
  most two members (``contested``), which bounds the duplicate origin bytes by
  ``contested().total()``.
* **Who has what?** ``have(member, ranges)`` records the pieces a member verified (from any
  source); its peers add them to that member's availability as a LAN holder. What someone
  has leaves the pool: it never needs the origin again.

Failures. A member that leaves or dies (the hub stops seeing it) is ``leave``-d: what it was
granted and nobody else has goes back to the pool, and the next claims hand it out again, so
the others finish without starting over; what it had and shared stays with those who got it
(and what it alone had goes back to the pool too).
There is no coordinator to lose: the first requester is a member like the others.

Invariants (``check_invariants``): the pool, every member's grants and the union of what
members have lie within ``[0, size)``; the pool overlaps neither a grant nor anything a
member has; grants of two members overlap only on ``contested`` bytes (endgame re-grants,
each granted to two members at most); and no byte is lost: pool, grants and holdings
together cover the content. Everything is pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from swarmget.core.pieces import align_up
from swarmget.core.ranges import ByteRange, RangeSet

__all__ = ["ClaimBook", "GroupMember"]

MiB = 1024 * 1024


@dataclass(slots=True)
class GroupMember:
    """One member of the group: what it was granted and what it verified."""

    id: str
    granted: RangeSet = field(default_factory=RangeSet)
    have: RangeSet = field(default_factory=RangeSet)
    #: every grant with the time it was made (for the group endgame)
    grants: list[tuple[ByteRange, float]] = field(default_factory=list)


class ClaimBook:
    """The origin work of one content, split among the members of a group (see above)."""

    def __init__(
        self,
        size: int,
        *,
        min_grant: int = 1 * MiB,
        max_grant: int = 4 * MiB,
        grants_per_member: int = 2,
        align: int = 1 * MiB,
        steal_after: float = 3.0,
    ) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        if not 0 < min_grant <= max_grant or grants_per_member < 1 or align < 1:
            raise ValueError("need 0 < min_grant <= max_grant, grants_per_member >= 1, align >= 1")
        if not steal_after >= 0:
            raise ValueError("steal_after must be >= 0")
        self.size = size
        self.min_grant, self.max_grant = min_grant, max_grant
        self.grants_per_member = grants_per_member
        self.align = align
        self.steal_after = steal_after
        self._pool = RangeSet([ByteRange(0, size)] if size else [])
        self._contested = RangeSet()  # granted to two members (group endgame)
        self._members: dict[str, GroupMember] = {}

    # --- queries -------------------------------------------------------------------------------

    def members(self) -> list[str]:
        return list(self._members)

    def pool(self) -> RangeSet:
        """Bytes nobody has and nobody was granted (a copy)."""
        return self._pool.copy()

    def holdings(self) -> dict[str, RangeSet]:
        """What each member verified (copies): its availability as a LAN holder."""
        return {m.id: m.have.copy() for m in self._members.values()}

    def contested(self) -> RangeSet:
        """Bytes granted to two members by the group endgame (a copy)."""
        return self._contested.copy()

    def granted(self, member: str) -> RangeSet:
        return self._get(member).granted.copy()

    def group_has(self) -> RangeSet:
        out = RangeSet()
        for m in self._members.values():
            for r in m.have:
                out.add(r)
        return out

    # --- events --------------------------------------------------------------------------------

    def join(self, member: str, have: Iterable[ByteRange] = ()) -> None:
        """``member`` wants the content (it may already hold some of it). Joining twice is
        harmless."""
        if member not in self._members:
            self._members[member] = GroupMember(member)
        self.have(member, have)

    def have(self, member: str, ranges: Iterable[ByteRange]) -> None:
        """``member`` verified ``ranges``: they leave the pool for good."""
        m = self._get(member)
        for r in ranges:
            if r.end > self.size:
                raise ValueError(f"{r} reaches beyond the content's {self.size} bytes")
            m.have.add(r)
            self._pool.subtract(r)

    def claim(self, member: str, *, now: float) -> ByteRange | None:
        """Grant ``member`` the next run of pool bytes its origin link should fetch (the
        lowest it lacks first); None when the pool is empty (or holds only what it has)."""
        m = self._get(member)
        run = next((r for p in self._pool for r in m.have.missing(p)), None)
        if run is None:
            return None
        share = self._pool.total() // (len(self._members) * self.grants_per_member)
        length = max(self.min_grant, min(self.max_grant, share))
        end = min(run.end, align_up(run.start + length, self.align))
        if run.end - end < self.min_grant:
            end = run.end  # no sliver behind
        grant = ByteRange(run.start, end)
        self._pool.subtract(grant)
        m.granted.add(grant)
        m.grants.append((grant, now))
        return grant

    def adopt(self, member: str, ranges: Iterable[ByteRange], *, now: float) -> RangeSet:
        """``member`` says it was granted ``ranges`` (it joins a rebuilt book again, after the
        hub restarted): the parts still in the pool become its grants, dated ``now``; parts
        another member has or was granted stay theirs. Returns what was adopted."""
        m = self._get(member)
        adopted = RangeSet()
        for r in ranges:
            if r.end > self.size:
                raise ValueError(f"{r} reaches beyond the content's {self.size} bytes")
            for part in [x for p in self._pool if (x := p.intersect(r)) is not None]:
                self._pool.subtract(part)
                m.granted.add(part)
                m.grants.append((part, now))
                adopted.add(part)
        return adopted

    def steal(self, member: str, *, now: float) -> ByteRange | None:
        """The group endgame (see the module docstring): grant ``member`` (whose origin link
        is idle) the far half (or all, if short) of the largest run granted to another
        member at least ``steal_after`` seconds before ``now``, reported by nobody,
        contested by nobody; None if there is none, or the pool still has bytes for it
        (``claim`` those first)."""
        m = self._get(member)
        if any(m.have.missing(p) for p in self._pool):
            return None
        skip = self.group_has()
        for r in (*m.granted, *m.have, *self._contested):
            skip.add(r)
        runs = [
            run
            for o in self._members.values()
            if o is not m
            for g, when in o.grants
            if now - when >= self.steal_after
            for run in skip.missing(g)
        ]
        if not runs:
            return None
        run = min(runs, key=lambda r: (-r.length, r.start))
        split = align_up(run.start + run.length // 2, self.align)
        if split - run.start < self.min_grant or run.end - split < self.min_grant:
            split = run.start  # too short to halve: a second copy of all of it
        grant = ByteRange(split, run.end)
        m.granted.add(grant)
        m.grants.append((grant, now))
        self._contested.add(grant)
        return grant

    def leave(self, member: str) -> RangeSet:
        """``member`` left or died: what it was granted or had that no other member has or
        was granted goes back to the pool (returned). Unknown members are ignored (a second
        notice of one death)."""
        m = self._members.pop(member, None)
        if m is None:
            return RangeSet()
        covered = self._covered()
        back = RangeSet()
        for part in (m.granted, m.have):
            for g in part:
                for r in covered.missing(g):
                    back.add(r)
                    self._pool.add(r)
        return back

    def _covered(self) -> RangeSet:
        """What some member has or was granted."""
        out = self.group_has()
        for m in self._members.values():
            for r in m.granted:
                out.add(r)
        return out

    def _get(self, member: str) -> GroupMember:
        m = self._members.get(member)
        if m is None:
            raise ValueError(f"{member!r} is not a member of this group")
        return m

    # --- checks --------------------------------------------------------------------------------

    def check_invariants(self) -> None:
        whole = ByteRange(0, self.size)
        seen = RangeSet()
        for m in self._members.values():
            for r in m.granted:
                for x in self._contested.missing(r):
                    assert not seen.overlaps(x), f"{x} granted twice, not contested"
                assert not self._pool.overlaps(r), f"{r} granted and in the pool"
            for r in m.granted:
                seen.add(r)
            for r in m.have:
                assert not self._pool.overlaps(r), f"{r} held and in the pool"
        for part in (self._pool, seen, self.group_has()):
            bounds = part.bounds()
            assert bounds is None or whole.intersect(bounds) == bounds, bounds
        everything = self._covered()
        for r in self._pool:
            everything.add(r)
        assert everything == RangeSet([whole] if self.size else []), "bytes lost"
