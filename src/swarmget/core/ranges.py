"""Byte ranges and sets of them.

A ``ByteRange`` is half-open, ``[start, end)``, so that lengths are ``end - start`` and
adjacent ranges touch without overlapping. HTTP's ``bytes=a-b`` is inclusive; the
conversion lives in ``http_spec``/``from_content_range`` and nowhere else.

``RangeSet`` keeps a sorted list of disjoint, non-adjacent ranges (adjacent ones are
merged on insert), like aioquic's ``quic/rangeset.py``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True, order=True, slots=True)
class ByteRange:
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid byte range [{self.start}, {self.end})")

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def length(self) -> int:
        return self.end - self.start

    def is_empty(self) -> bool:
        return self.end == self.start

    def intersect(self, other: ByteRange) -> ByteRange | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return ByteRange(start, end) if start < end else None

    def http_spec(self) -> str:
        """The value of a ``Range`` header asking for exactly this range (RFC 9110 §14.1.2)."""
        if self.is_empty():
            raise ValueError("cannot request an empty range")
        return f"bytes={self.start}-{self.end - 1}"

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"


class RangeSet:
    """A set of byte offsets stored as sorted, disjoint, merged ``ByteRange``s."""

    __slots__ = ("_ranges",)

    def __init__(self, ranges: Iterable[ByteRange] = ()) -> None:
        self._ranges: list[ByteRange] = []
        for r in ranges:
            self.add(r)

    # --- queries -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[ByteRange]:
        return iter(list(self._ranges))

    def __len__(self) -> int:
        """Number of disjoint ranges (not bytes: see ``total``)."""
        return len(self._ranges)

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and self._ranges == other._ranges

    def __repr__(self) -> str:
        return "RangeSet([" + ", ".join(str(r) for r in self._ranges) + "])"

    def total(self) -> int:
        """Number of bytes covered."""
        return sum(r.length for r in self._ranges)

    def bounds(self) -> ByteRange | None:
        if not self._ranges:
            return None
        return ByteRange(self._ranges[0].start, self._ranges[-1].end)

    def first(self) -> ByteRange | None:
        return self._ranges[0] if self._ranges else None

    def contains(self, r: ByteRange) -> bool:
        """True when every byte of ``r`` is in the set."""
        if r.is_empty():
            return True
        i = bisect.bisect_right(self._ranges, ByteRange(r.start, 2**63)) - 1
        return i >= 0 and self._ranges[i].start <= r.start and r.end <= self._ranges[i].end

    def overlaps(self, r: ByteRange) -> bool:
        return any(x.intersect(r) is not None for x in self._ranges)

    def missing(self, within: ByteRange) -> RangeSet:
        """The parts of ``within`` that are not in this set."""
        return RangeSet([within]).difference(self)

    def first_common(self, other: RangeSet) -> ByteRange | None:
        """The lowest run of bytes in both sets (None: they share none). One walk over
        both lists, stopping at the first overlap: O(len(self) + len(other)) at most."""
        mine, theirs = self._ranges, other._ranges
        n, m = len(mine), len(theirs)
        i = j = 0
        while i < n and j < m:
            x, y = mine[i], theirs[j]
            if x.end <= y.start:
                i += 1
            elif y.end <= x.start:
                j += 1
            else:
                return ByteRange(max(x.start, y.start), min(x.end, y.end))
        return None

    def first_outside(self, other: RangeSet) -> ByteRange | None:
        """The lowest run of bytes in this set and not in ``other`` (None: ``other`` holds
        all of it); stops at the first such run."""
        return next(self._runs_outside(other), None)

    def difference(self, other: RangeSet) -> RangeSet:
        """The bytes of this set that ``other`` does not hold."""
        result = RangeSet()
        result._ranges = list(self._runs_outside(other))
        return result

    def _runs_outside(self, other: RangeSet) -> Iterator[ByteRange]:
        """This set's runs of bytes that ``other`` does not hold, lowest first (sorted,
        disjoint, not adjacent). One walk over both lists: O(len(self) + len(other))."""
        theirs = other._ranges
        m = len(theirs)
        j = 0
        for x in self._ranges:
            start = x.start
            while j < m and theirs[j].end <= start:
                j += 1
            k = j
            while k < m and theirs[k].start < x.end:
                y = theirs[k]
                if y.start > start:
                    yield ByteRange(start, y.start)
                start = max(start, y.end)
                k += 1
            if start < x.end:
                yield ByteRange(start, x.end)
            j = max(j, k - 1)  # theirs[k - 1] may reach into the next x

    def copy(self) -> RangeSet:
        c = RangeSet()
        c._ranges = list(self._ranges)
        return c

    def as_pairs(self) -> list[list[int]]:
        """JSON-friendly ``[[start, end], ...]``."""
        return [[r.start, r.end] for r in self._ranges]

    @classmethod
    def of_sorted(cls, ranges: Iterable[ByteRange]) -> RangeSet:
        """The set of ``ranges`` given in order of their starts (overlapping and touching
        ones merged) in one pass; ``ValueError`` if one starts before the one before it."""
        out: list[ByteRange] = []
        for r in ranges:
            if r.is_empty():
                continue
            if out:
                last = out[-1]
                if r.start < last.start:
                    raise ValueError(f"ranges not sorted: {r} after {last}")
                if r.start <= last.end:
                    if r.end > last.end:
                        out[-1] = ByteRange(last.start, r.end)
                    continue
            out.append(r)
        result = cls()
        result._ranges = out
        return result

    @classmethod
    def from_pairs(cls, pairs: Iterable[Iterable[int]]) -> RangeSet:
        out = cls()
        for pair in pairs:
            start, end = (int(x) for x in pair)
            out.add(ByteRange(start, end))
        return out

    # --- updates -----------------------------------------------------------------------------

    def add(self, r: ByteRange) -> None:
        if r.is_empty():
            return
        start, end = r.start, r.end
        # find every range that touches or overlaps [start, end) and merge them
        lo = bisect.bisect_left(self._ranges, ByteRange(start, start))
        if lo > 0 and self._ranges[lo - 1].end >= start:
            lo -= 1
        hi = lo
        while hi < len(self._ranges) and self._ranges[hi].start <= end:
            start = min(start, self._ranges[hi].start)
            end = max(end, self._ranges[hi].end)
            hi += 1
        self._ranges[lo:hi] = [ByteRange(start, end)]

    def update(self, other: RangeSet) -> None:
        """Add every range of ``other``: one merge of the two sorted lists, O(len(self) +
        len(other)), where adding them one by one shifts the list each time."""
        mine, theirs = self._ranges, other._ranges
        if not theirs:
            return
        if not mine:
            self._ranges = list(theirs)  # already sorted, disjoint and merged
            return
        out: list[ByteRange] = []
        n, m = len(mine), len(theirs)
        i = j = 0
        while i < n or j < m:
            if j >= m or (i < n and mine[i].start <= theirs[j].start):
                r = mine[i]
                i += 1
            else:
                r = theirs[j]
                j += 1
            if out and r.start <= out[-1].end:
                if r.end > out[-1].end:
                    out[-1] = ByteRange(out[-1].start, r.end)
            else:
                out.append(r)
        self._ranges = out

    def subtract(self, r: ByteRange) -> None:
        if r.is_empty():
            return
        out: list[ByteRange] = []
        for x in self._ranges:
            if x.end <= r.start or x.start >= r.end:
                out.append(x)
                continue
            if x.start < r.start:
                out.append(ByteRange(x.start, r.start))
            if r.end < x.end:
                out.append(ByteRange(r.end, x.end))
        self._ranges = out

    def pop_first(self, max_length: int) -> ByteRange | None:
        """Remove and return up to ``max_length`` bytes from the lowest range."""
        if not self._ranges:
            return None
        head = self._ranges[0]
        taken = ByteRange(head.start, min(head.end, head.start + max_length))
        if taken.end == head.end:
            self._ranges.pop(0)
        else:
            self._ranges[0] = ByteRange(taken.end, head.end)
        return taken


#: A piece of a body as sources hand it over: bytes, or a view of a reused buffer
#: (``net.rawhttp``), valid for as long as it is referenced.
Chunk: TypeAlias = bytes | bytearray | memoryview
