"""In-process fakes of fetch once per LAN (#15) for engine tests: the hub's content index
(``FakeContentHub``, one ``core.claims.ClaimBook`` per content, like the real hub) and the
LAN of holders (``FakeLan``: each node's holdings, streamed from its files on disk).

``FakeContentHub.client(node_id, url)`` is that node's ``engine.sharing.ContentIndex``;
``FakeLan.holdings(node_id)`` its ``Holdings`` and ``FakeLan.streams()`` the
``HolderStreams`` every node uses. Faults are switched by the test: ``hub.down`` (every
call raises ``HubUnavailable``), ``hub.expire(node)`` (its registration ran out: it leaves
every content), ``lan.lie(node)`` (it serves every byte flipped), ``lan.unplug(node)``
(its streams fail as a dead machine's would). A node's whole holding is its own copy
(``Holdings.own_copy``) unless ``lan.own_copies`` is False; ``lan.own_reads`` counts the
bytes read from own copies.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from swarmget.core.claims import ClaimBook
from swarmget.core.content import ContentKey
from swarmget.core.errors import (
    ContentKeyMismatch,
    ContentNotHeld,
    HubRejected,
    HubUnavailable,
    NotAContentMember,
    SourceRetryable,
)
from swarmget.core.probe import OriginInfo
from swarmget.core.ranges import ByteRange, Chunk, RangeSet
from swarmget.protocol.content import (
    ContentGroup,
    ContentLeave,
    ContentMember,
    ContentNews,
    ContentReport,
    JoinContent,
    ranges_of,
    wire_ranges,
)

MiB = 1024 * 1024
CHUNK = 64 * 1024
#: distinct members reporting one member before the index drops it (docs §6)
REPORTS_TO_DROP = 2


@dataclass
class _Content:
    book: ClaimBook
    fetching: dict[str, bool] = field(default_factory=dict)
    reports: dict[str, set[str]] = field(default_factory=dict)  # reported -> reporters


class FakeContentHub:
    """The content index of one hub, in memory (see the module docstring)."""

    def __init__(
        self,
        *,
        min_grant: int = 1 * MiB,
        max_grant: int = 4 * MiB,
        align: int = 1 * MiB,
        steal_after: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._grants = (min_grant, max_grant, align)
        self._steal_after = steal_after
        self._clock = clock
        self._contents: dict[str, _Content] = {}
        self._urls: dict[str, str] = {}
        self.down = False
        #: every call: (node, action, name)
        self.calls: list[tuple[str, str, str]] = []
        #: every report: (reporter, name, report)
        self.reports: list[tuple[str, str, ContentReport]] = []

    def client(self, node_id: str, url: str = "http://127.0.0.1:1") -> FakeContentIndex:
        self._urls[node_id] = url
        return FakeContentIndex(self, node_id)

    def expire(self, node_id: str) -> None:
        """``node_id``'s registration ran out: it leaves every content."""
        for content in self._contents.values():
            content.book.leave(node_id)
            content.fetching.pop(node_id, None)

    def restart(self) -> None:
        """The hub restarted: its content index (memory) is empty."""
        self._contents.clear()

    def holders(self, name: str) -> list[str]:
        """Members of ``name`` that hold it and do not fetch it."""
        content = self._contents.get(name)
        if content is None:
            return []
        return sorted(node for node, fetching in content.fetching.items() if not fetching)

    def members(self, name: str) -> list[str]:
        content = self._contents.get(name)
        return [] if content is None else content.book.members()

    def granted(self, name: str, node: str) -> RangeSet:
        """What ``node`` was granted of ``name`` so far (nothing: not a member)."""
        content = self._contents.get(name)
        if content is None or node not in content.book.members():
            return RangeSet()
        return content.book.granted(node)

    # --- what a client asks --------------------------------------------------------------------

    def _enter(self, node: str, action: str, name: str) -> None:
        self.calls.append((node, action, name))
        if self.down:
            raise HubUnavailable("the fake hub is down")

    def _content(self, node: str, name: str) -> _Content:
        content = self._contents.get(name)
        if content is None or node not in content.fetching:
            raise NotAContentMember(f"{node} is not a member of {name}")
        return content

    def join(self, node: str, name: str, request: JoinContent) -> ContentGroup:
        self._enter(node, "join", name)
        content = self._contents.get(name)
        if content is None:
            low, high, align = self._grants
            book = ClaimBook(
                request.size,
                min_grant=low,
                max_grant=high,
                align=align,
                steal_after=self._steal_after,
            )
            content = self._contents[name] = _Content(book)
        if content.book.size != request.size:
            raise HubRejected(f"{name} is {content.book.size} bytes, not {request.size}")
        content.book.join(node, ranges_of(request.have))
        content.fetching[node] = request.fetching
        grant = None
        if request.fetching and request.can_fetch:
            grant = content.book.claim(node, now=self._clock())
        return self._group(node, name, content, grant)

    def news(self, node: str, name: str, request: ContentNews) -> ContentGroup:
        self._enter(node, "news", name)
        content = self._content(node, name)
        book = content.book
        book.have(node, ranges_of(request.have))
        grant = None
        if request.claim:
            grant = book.claim(node, now=self._clock())
            if grant is None and request.idle:
                grant = book.steal(node, now=self._clock())
        return self._group(node, name, content, grant)

    def leave(self, node: str, name: str, request: ContentLeave) -> None:
        self._enter(node, "leave", name)
        content = self._content(node, name)
        if request.keep_as_holder:
            content.book.have(node, [ByteRange(0, content.book.size)])
            content.fetching[node] = False
        else:
            content.book.leave(node)
            del content.fetching[node]

    def report(self, node: str, name: str, request: ContentReport) -> ContentGroup:
        self._enter(node, "report", name)
        content = self._content(node, name)
        self.reports.append((node, name, request))
        reporters = content.reports.setdefault(request.node_id, set())
        reporters.add(node)
        if len(reporters) >= REPORTS_TO_DROP:
            content.book.leave(request.node_id)
            content.fetching.pop(request.node_id, None)
        return self._group(node, name, content, None)

    def _group(
        self, node: str, name: str, content: _Content, grant: ByteRange | None
    ) -> ContentGroup:
        holdings = content.book.holdings()
        members = [
            ContentMember(
                node_id=other,
                url=self._urls.get(other, "http://127.0.0.1:1"),
                have=wire_ranges(holdings[other]),
                fetching=fetching,
            )
            for other, fetching in content.fetching.items()
            if other != node
        ]
        wire = None if grant is None else (grant.start, grant.end)
        return ContentGroup(name=name, size=content.book.size, members=members, grant=wire)


class FakeContentIndex:
    """One node's view of a ``FakeContentHub`` (an ``engine.sharing.ContentIndex``)."""

    def __init__(self, hub: FakeContentHub, node_id: str) -> None:
        self._hub, self.node_id = hub, node_id

    async def join(self, name: str, request: JoinContent) -> ContentGroup:
        await asyncio.sleep(0)
        return self._hub.join(self.node_id, name, request)

    async def news(self, name: str, request: ContentNews, *, size: int) -> ContentGroup:
        await asyncio.sleep(0)
        return self._checked(size, self._hub.news(self.node_id, name, request))

    async def leave(self, name: str, *, keep_as_holder: bool = False) -> None:
        await asyncio.sleep(0)
        self._hub.leave(self.node_id, name, ContentLeave(keep_as_holder=keep_as_holder))

    async def report(self, name: str, request: ContentReport, *, size: int) -> ContentGroup:
        await asyncio.sleep(0)
        return self._checked(size, self._hub.report(self.node_id, name, request))

    def _checked(self, size: int, group: ContentGroup) -> ContentGroup:
        if group.size != size:  # as the real client does
            raise HubUnavailable(f"the answer is about a {group.size}-byte content")
        return group


@dataclass
class _Held:
    key: ContentKey
    path: Path
    verified: RangeSet


class FakeLan:
    """Every node's holdings, and streams of them (see the module docstring)."""

    def __init__(self) -> None:
        self._held: dict[str, dict[str, _Held]] = {}
        self._liars: set[str] = set()
        self._unplugged: set[str] = set()
        #: bytes each node served
        self.served: dict[str, int] = {}
        #: (node, content name) -> pins held now (``FakeHoldings.pinned``), and ever taken
        self.pins: dict[tuple[str, str], int] = {}
        self.pins_taken: dict[tuple[str, str], int] = {}
        #: whether a node's whole holding is offered as its own copy (``own_copy``)
        self.own_copies = True
        #: bytes each node read from its own copy
        self.own_reads: dict[str, int] = {}

    def holdings(self, node_id: str) -> FakeHoldings:
        return FakeHoldings(self, node_id)

    def streams(self) -> FakeLan:
        """The ``engine.sharing.Holders`` every node uses."""
        return self

    def source(self, member: ContentMember, key: ContentKey) -> FakeHolderSource:
        return FakeHolderSource(self, member, key)

    def lie(self, node_id: str) -> None:
        self._liars.add(node_id)

    def unplug(self, node_id: str) -> None:
        self._unplugged.add(node_id)

    def held(self, node_id: str, key: ContentKey) -> RangeSet:
        held = self._held.get(node_id, {}).get(key.index_name())
        return RangeSet() if held is None else held.verified.copy()

    def _offer(self, node_id: str, key: ContentKey, path: Path, verified: RangeSet) -> None:
        self._held.setdefault(node_id, {})[key.index_name()] = _Held(key, path, verified.copy())

    def _own_copy(self, node_id: str, key: ContentKey) -> FakeOwnCopy | None:
        held = self._held.get(node_id, {}).get(key.index_name())
        if not self.own_copies or held is None or key.size is None:
            return None
        if not held.key.same_content(key) or not held.verified.contains(ByteRange(0, key.size)):
            return None
        return FakeOwnCopy(self, node_id, held.path)

    def _withdraw(self, node_id: str, key: ContentKey) -> None:
        self._held.get(node_id, {}).pop(key.index_name(), None)

    @asynccontextmanager
    async def open_content_range(
        self, holder: ContentMember, key: ContentKey, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        """Stream ``rng`` of ``key`` from ``holder``'s file, as the holder route would."""
        node = holder.node_id
        if node in self._unplugged:
            raise SourceRetryable(f"{node}: connection refused")
        held = self._held.get(node, {}).get(key.index_name())
        if held is None or not held.key.same_content(key):
            raise ContentKeyMismatch(f"{node} does not hold that content")
        if not held.verified.contains(rng):
            raise ContentNotHeld(f"{node} has not verified {rng}")
        yield self._body(node, held.path, rng)

    async def _body(self, node: str, path: Path, rng: ByteRange) -> AsyncIterator[Chunk]:
        for start in range(rng.start, rng.end, CHUNK):
            if node in self._unplugged:
                raise SourceRetryable(f"{node}: connection reset")
            length = min(CHUNK, rng.end - start)
            try:
                data = await asyncio.to_thread(_pread, path, start, length)
            except OSError as exc:
                raise SourceRetryable(f"{node} cannot read {path}: {exc}") from exc
            if len(data) != length:
                raise SourceRetryable(f"{node}: {path} is short")
            if node in self._liars:
                data = bytes(b ^ 0xFF for b in data)
            self.served[node] = self.served.get(node, 0) + length
            yield data


@dataclass(frozen=True)
class FakeHolderSource:
    """One holder on a ``FakeLan``, as a range source (``FakeLan.source``)."""

    lan: FakeLan
    member: ContentMember
    key: ContentKey
    slots: int = 2

    @property
    def source_id(self) -> str:
        return self.member.node_id

    def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AbstractAsyncContextManager[AsyncIterator[Chunk]]:
        return self.lan.open_content_range(self.member, self.key, rng)


@dataclass(frozen=True)
class FakeOwnCopy:
    """A node's own copy on a ``FakeLan``, as a range source (``FakeHoldings.own_copy``):
    a file that is gone or short fails as ``ContentNotHeld``, as the node's would."""

    lan: FakeLan
    node_id: str
    path: Path
    slots: int = 2
    source_id: str = "own-copy"

    @asynccontextmanager
    async def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        yield self._body(rng)

    async def _body(self, rng: ByteRange) -> AsyncIterator[Chunk]:
        for start in range(rng.start, rng.end, CHUNK):
            length = min(CHUNK, rng.end - start)
            try:
                data = await asyncio.to_thread(_pread, self.path, start, length)
            except OSError as exc:
                raise ContentNotHeld(f"{self.path}: {exc}") from exc
            if len(data) != length:
                raise ContentNotHeld(f"{self.path} is short")
            self.lan.own_reads[self.node_id] = self.lan.own_reads.get(self.node_id, 0) + length
            yield data


class FakeHoldings:
    """One node's holdings registry on a ``FakeLan`` (an ``engine.sharing.Holdings``)."""

    def __init__(self, lan: FakeLan, node_id: str) -> None:
        self._lan, self.node_id = lan, node_id

    def offer(self, key: ContentKey, path: Path, verified: RangeSet) -> None:
        self._lan._offer(self.node_id, key, path, verified)

    def withdraw(self, key: ContentKey) -> None:
        self._lan._withdraw(self.node_id, key)

    def own_copy(self, key: ContentKey) -> FakeOwnCopy | None:
        return self._lan._own_copy(self.node_id, key)

    @contextmanager
    def pinned(self, key: ContentKey) -> Iterator[None]:
        pins, at = self._lan.pins, (self.node_id, key.index_name())
        pins[at] = pins.get(at, 0) + 1
        self._lan.pins_taken[at] = self._lan.pins_taken.get(at, 0) + 1
        try:
            yield
        finally:
            pins[at] -= 1


def _pread(path: Path, start: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, start)
    finally:
        os.close(fd)
