"""What every part of one download shares: the request, its sources, the clock, what the
probe pinned, the stage it is in, and the record of what happened (typed events)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from swarmget.core import events as ev
from swarmget.core.byte_sources import BytesBySource, SourceKind
from swarmget.core.content import ContentKey
from swarmget.core.manifest import Manifest
from swarmget.core.ranges import ByteRange, Chunk
from swarmget.core.scheduler import Ban, Cancel
from swarmget.engine.sources import OriginSource, OwnCopySource, RangeSource, trusted
from swarmget.engine.spec import DownloadSpec, Stage, Timeline
from swarmget.net.origin import FirstRange, OriginClient, OriginInfo

log = logging.getLogger("swarmget.engine")

#: the latest events kept for displays (the portal's timeline)
EVENTS_KEPT = 2000


class DownloadContext:
    """One download's shared state. Parts read and set its fields; events go through
    ``emit`` (kept, logged, and handed to ``on_event`` as they happen)."""

    def __init__(
        self,
        spec: DownloadSpec,
        origin: OriginClient,
        sources: Sequence[RangeSource],
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[ev.Event], None] | None = None,
        on_bytes: Callable[[SourceKind, int], None] | None = None,
    ) -> None:
        self.spec = spec
        self.origin = origin
        self.sources = {s.source_id: s for s in sources}
        self.clock = clock
        self.t0 = clock()
        self.events: deque[ev.Event] = deque(maxlen=EVENTS_KEPT)
        self.stage = Stage.PROBING
        self.info: OriginInfo | None = None  # what the probe pinned
        self.manifest: Manifest | None = None  # the relay's, when there is a relay
        self.last_byte_at = 0.0  # when the last byte came in (the clock's time)
        self._last_data: dict[str, float] = {}  # source id -> its last byte in (clock time)
        self._on_event = on_event
        self._on_bytes = on_bytes
        self.holders: set[str] = set()  # the source ids of LAN holders (the group adds them)
        self._by_kind: dict[SourceKind, int] = dict.fromkeys(SourceKind, 0)
        self.marks = TimelineMarks()  # when each phase happened (``at()`` offsets)
        #: the probe's answer when it was the first range (``OriginClient.probe_first``),
        #: until a stream of our own origin connections reads it (``open_range``)
        self.first: FirstRange | None = None

    def pinned(self) -> OriginInfo:
        info = self.info
        assert info is not None, "not probed yet"
        return info

    def content_key(self) -> ContentKey:
        """The key of what the probe pinned (the user's sha256 checksum first)."""
        checksum = next((d for d in self.spec.checksums if d.algorithm == "sha256"), None)
        return ContentKey.from_origin_info(self.pinned(), checksum=checksum)

    def open_range(
        self, source: RangeSource, rng: ByteRange
    ) -> AbstractAsyncContextManager[AsyncIterator[Chunk]]:
        """``source.open_range`` of the pinned file; the first range of our own origin
        connections that starts where the probe's kept answer does reads that answer
        (``OriginClient.open_first``: one round trip saved, issue #14)."""
        first, info = self.first, self.pinned()
        if (
            first is not None
            and isinstance(source, OriginSource)
            and source.client is self.origin
            and rng.start == first.range.start
            and first.info == info
        ):
            self.first = None
            return self.origin.open_first(first, info, rng)
        return source.open_range(info, rng)

    async def drop_first(self) -> None:
        """Close the probe's kept answer if no stream read it (idempotent)."""
        first, self.first = self.first, None
        if first is not None:
            await first.aclose()

    def own_sources(self) -> set[str]:
        """Our own connections to the origin and this node's own copy of the content
        (``sources.trusted``: their bytes are not sampled, and are not helper bytes)."""
        return {i for i, s in self.sources.items() if trusted(s)}

    def at(self) -> float:
        """Now, in seconds since the download started (an event's time)."""
        return self.clock() - self.t0

    def first_byte(self, source_id: str) -> None:
        """A chunk came in from ``source_id``: its first one is marked on the timeline."""
        if source_id not in self.marks.first_byte:
            self.marks.first_byte[source_id] = self.at()

    def data_from(self, source_id: str, now: float) -> None:
        """A chunk came in from ``source_id`` at ``now`` (the clock's time): the last byte
        so far, overall and from that source."""
        self.last_byte_at = now
        self._last_data[source_id] = now

    def timeline(self) -> Timeline:
        """The timeline so far (the last byte from ``last_byte_at``)."""
        marks = self.marks
        last = self.last_byte_at - self.t0 if self.last_byte_at else None
        return Timeline(
            hub=marks.hub,
            hub_peers=marks.hub_peers,
            probe=marks.probe,
            joined=dict(marks.joined),
            first_byte=dict(marks.first_byte),
            last_data={k: v - self.t0 for k, v in self._last_data.items()},
            last_byte=last,
            verified=marks.verified,
        )

    def emit(self, event: ev.Event) -> None:
        self.events.append(event)
        level = logging.DEBUG if isinstance(event, ev.ROUTINE) else logging.INFO
        log.log(level, "%s %s: %s", ev.kind(event), ev.source(event) or "-", ev.describe(event))
        if self._on_event is not None:
            self._on_event(event)

    def kind_of(self, source_id: str) -> SourceKind | None:
        """The kind of link ``source_id``'s bytes come over; None for this node's own kept
        copy (read from its disk: neither origin nor LAN bytes, ``sharing.own_bytes``)."""
        if source_id in self.holders:
            return SourceKind.LAN
        source = self.sources.get(source_id)
        if isinstance(source, OwnCopySource):
            return None
        own = isinstance(source, OriginSource)
        return SourceKind.ORIGIN if own else SourceKind.HELPER

    def received(self, kind: SourceKind, n: int) -> None:
        """``n`` bytes came in over a link of ``kind``, whether or not they are kept
        (counted for the progress, and told to ``on_bytes``: the metrics count them)."""
        self._by_kind[kind] += n
        if self._on_bytes is not None:
            self._on_bytes(kind, n)

    def by_source(self) -> BytesBySource:
        """The bytes received so far, per kind of link (``core.byte_sources``)."""
        return BytesBySource.of(self._by_kind)

    def revoked(self, action: Cancel) -> None:
        cause, reason = action.cause, action.reason
        self.emit(ev.Revoked(at=self.at(), source_id=action.source_id, cause=cause, reason=reason))

    def banned(self, action: Ban) -> None:
        self.emit(ev.Banned(at=self.at(), source_id=action.source_id, reason=action.reason))

    def last_failure(self) -> str:
        for event in reversed(self.events):
            if isinstance(event, ev.StreamFailed | ev.Banned):
                return f"{event.source_id}: {ev.describe(event)}"
        return "no source could be used"


class TimelineMarks:
    """The points of a ``Timeline`` as they are marked (offsets from the download's start)."""

    def __init__(self) -> None:
        self.hub: float | None = None
        self.hub_peers: int | None = None
        self.probe: float | None = None
        self.joined: dict[str, float] = {}
        self.first_byte: dict[str, float] = {}
        self.verified: float | None = None
