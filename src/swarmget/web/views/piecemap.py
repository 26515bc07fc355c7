"""The details page's piece map: which bytes came from which source, what is in flight, and
what was fetched again after a failure.

Re-fetched ranges are derived from the download's events: when a stream fails
(``StreamFailed``, with the range it was given) or is revoked (``Revoked`` for a stall, a ban,
a source gone), the bytes it had not written go back to the scheduler and are assigned again.
So the bytes of such a range that a *later* ``Assigned`` covers, and that its failed source
did not deliver, are the re-fetched ones; so are the bytes that failed a check (``BadData``)
and were assigned again. (A revoked stream's event does not name its range: every range its
source had been given so far stands in for it. A piece stolen from a third source after the
failure can then be marked too: the map errs on the side of showing more.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmget.core import events as ev
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.web.humanize import human_bytes


@dataclass(frozen=True, kw_only=True)
class LeaseView:
    """One stream in flight, from the scheduler: the part of its piece still to come."""

    source: str
    start: int
    end: int
    duplicate: bool
    age: float  # seconds since it was assigned


@dataclass(frozen=True, kw_only=True)
class Block:
    left: float  # percent of the file
    width: float
    colour: int
    source: str
    title: str
    duplicate: bool = False

    @property
    def style(self) -> str:
        return f"left:{self.left:.4f}%;width:{self.width:.4f}%"


def refetched_ranges(
    events: Sequence[ev.Event], sources: Iterable[Mapping[str, Any]]
) -> tuple[RangeSet, set[int]]:
    """The bytes fetched again after a failure, and the indexes of the ``Assigned`` events
    that fetched them. See the module docstring for how they are derived."""
    delivered = {str(s["id"]): RangeSet.from_pairs(s.get("segments") or []) for s in sources}
    windows = _given_back(events, delivered)
    out, later = RangeSet(), RangeSet()  # later: everything assigned after event i
    for i in range(len(events) - 1, -1, -1):
        for r in windows.get(i, ()):
            for x in _intersection(later, r):
                out.add(x)
        if isinstance(event := events[i], ev.Assigned):
            later.add(event.range)
    reassigns, pending = set(), RangeSet()
    for i, event in enumerate(events):
        for r in windows.get(i, ()):
            for x in _intersection(out, r):
                pending.add(x)
        if isinstance(event, ev.Assigned) and _intersection(pending, event.range):
            reassigns.add(i)
    return out, reassigns


def _given_back(
    events: Sequence[ev.Event], delivered: Mapping[str, RangeSet]
) -> dict[int, RangeSet]:
    """Per failure or revocation event: the bytes its source may have given back."""
    given: dict[str, RangeSet] = {}  # per source: every range assigned to it so far
    windows: dict[int, RangeSet] = {}
    for i, event in enumerate(events):
        match event:
            case ev.BadData():  # bytes that failed a check
                windows[i] = RangeSet([event.range])
                continue
            case ev.Assigned() | ev.EndgameCopy():
                given.setdefault(event.source_id, RangeSet()).add(event.range)
                continue
            case ev.StreamFailed():
                window = RangeSet([event.range])
            case ev.Revoked() if event.cause is not ev.CancelCause.LOST_RACE:
                window = given.get(event.source_id, RangeSet()).copy()
            case _:
                continue
        mine = delivered.get(event.source_id, RangeSet())
        windows[i] = RangeSet(x for r in window for x in mine.missing(r))
    return windows


def _intersection(ranges: RangeSet, rng: ByteRange) -> list[ByteRange]:
    return [x for r in ranges if (x := r.intersect(rng)) is not None]


def _pct(offset: int, size: int) -> float:
    return 100.0 * offset / size


def done_blocks(
    sources: Sequence[Mapping[str, Any]], colours: Mapping[str, int], size: int | None
) -> Iterable[Block]:
    if not size:
        return
    for s in sources:
        sid = str(s["id"])
        for start, end in s.get("segments") or []:
            yield Block(
                left=_pct(start, size),
                width=_pct(end - start, size),
                colour=colours.get(sid, 0),
                source=sid,
                title=f"{human_bytes(start)}–{human_bytes(end)} from {sid}",
            )


def lease_blocks(
    leases: Sequence[LeaseView], colours: Mapping[str, int], size: int | None
) -> Iterable[Block]:
    if not size:
        return
    for lease in leases:
        what = "endgame copy" if lease.duplicate else "in flight"
        yield Block(
            left=_pct(lease.start, size),
            width=_pct(lease.end - lease.start, size),
            colour=colours.get(lease.source, 0),
            source=lease.source,
            title=f"{human_bytes(lease.start)}–{human_bytes(lease.end)} {what} from {lease.source}",
            duplicate=lease.duplicate,
        )


def plain_blocks(ranges: RangeSet, size: int | None, what: str) -> Iterable[Block]:
    if not size:
        return
    for r in ranges:
        yield Block(
            left=_pct(r.start, size),
            width=_pct(r.length, size),
            colour=0,
            source="",
            title=f"{human_bytes(r.start)}–{human_bytes(r.end)} {what}",
        )


def ticks(size: int | None) -> tuple[tuple[float, str], ...]:
    if not size:
        return ()
    return tuple((q * 25.0, human_bytes(size * q // 4)) for q in range(5))


def resumed_ranges(sources: Sequence[Mapping[str, Any]], size: int | None) -> RangeSet:
    """Of a finished file, the bytes no source of this run wrote: they were on disk from an
    earlier run (resumed, and verified with the rest), not missing."""
    if not size:
        return RangeSet()
    fetched = RangeSet(
        ByteRange(int(a), int(b)) for s in sources for a, b in s.get("segments") or [] if b > a
    )
    return fetched.missing(ByteRange(0, size))
