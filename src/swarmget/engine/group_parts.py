"""The parts of a group fetch (``engine.group``) that need no conversation: the LAN holder
as a source, what our links have left of their grants, the bytes only a banned holder had,
and the sharing report of a finished download (with the origin streams we cut short)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager

from swarmget.core.ranges import ByteRange, Chunk, RangeSet
from swarmget.core.scheduler import Scheduler
from swarmget.core.verification import Verification
from swarmget.engine.sharing import SharingNote, SharingReport
from swarmget.engine.sources import OWN_COPY, RangeSource
from swarmget.engine.spec import DownloadResult
from swarmget.net.origin import OriginInfo
from swarmget.protocol.content import MAX_RANGES, ContentMember

#: the id prefix of a LAN holder source
HOLDER_PREFIX = "lan:"


class HolderSource:
    """A LAN holder of the content as a ``RangeSource`` of the download, under its own id
    (``lan:<node>``: the same node may also be a helper) and ``slots``; untrusted: its
    streams are checked like a helper's."""

    def __init__(self, member: ContentMember, inner: RangeSource, slots: int) -> None:
        self.member, self._inner, self._slots = member, inner, slots

    @property
    def source_id(self) -> str:
        return HOLDER_PREFIX + self.member.node_id

    @property
    def slots(self) -> int:
        return self._slots

    def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AbstractAsyncContextManager[AsyncIterator[Chunk]]:
        return self._inner.open_range(info, rng)


def link_left(sched: Scheduler, granted: RangeSet) -> int:
    """Granted bytes our links have not fetched yet."""
    return granted.difference(sched.done()).total()


def link_unleased(sched: Scheduler, granted: RangeSet) -> int:
    """Granted bytes neither fetched nor leased (to any source) yet."""
    leased = RangeSet(lease.range for lease in sched.leases())
    return granted.difference(sched.done()).difference(leased).total()


def only_at(sched: Scheduler, sid: str, others: Iterable[str]) -> RangeSet:
    """Bytes we lack that holder ``sid`` could serve and none of ``others`` can."""
    out = (sched.availability(sid) or RangeSet()).difference(sched.done())
    for other in others:
        out = out.difference(sched.availability(other) or RangeSet())
    return out


def sharing_report(
    result: DownloadResult,
    *,
    joined: bool,
    holders_used: bool,
    holders: set[str],
    banned: Iterable[str],
    notes: Iterable[SharingNote],
) -> SharingReport:
    """What the group fetch did: bytes over our origin links (own and helpers, with the
    samples checked against the origin) and from the LAN ``holders`` (source ids ever
    held), and how many of our links' streams we cut short (``SourceInfo.cut``)."""
    lan = sum(s.received for s in result.sources if s.source_id in holders)
    own = [s for s in result.sources if s.source_id == OWN_COPY]
    read = sum(s.received for s in own)  # (with the endgame's second copies)
    ours = [s for s in result.sources if s.source_id not in holders]
    links = sum(s.received for s in ours)
    return SharingReport(
        joined=joined,
        holders_used=holders_used,
        origin_bytes=links - read + result.verification.sampled_bytes,
        lan_bytes=lan,
        own_bytes=sum(s.claimed for s in own),
        holder_check=result.verification.level if lan else Verification.NONE,
        banned_holders=tuple(s.removeprefix(HOLDER_PREFIX) for s in banned),
        notes=tuple(notes),
        origin_cuts=sum(s.cut for s in ours if s.source_id != OWN_COPY),
    )


def first_runs(ranges: RangeSet) -> RangeSet:
    """At most ``MAX_RANGES`` runs of ``ranges`` (the rest goes with the next message)."""
    if len(ranges) <= MAX_RANGES:
        return ranges
    return RangeSet(r for i, r in enumerate(ranges) if i < MAX_RANGES)
