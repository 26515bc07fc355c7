"""Fetch once per LAN (#15), the requester's side: the narrow ports the group fetch talks
through, its settings, and what the result says about it.

The engine does not know HTTP here: the hub's content index and a LAN holder's byte stream
are ``typing.Protocol`` ports (``ContentIndex``, ``Holders``), and what this node can
serve to others is told to ``Holdings``. The node adapts its hub and peer clients to them;
``swarmget.testing.content_index`` has in-process fakes for tests.

Design: ``docs/fetch-once.md`` sections 4 (claims), 5 (a holder as a source), 6 (trust).
"""

from __future__ import annotations

import enum
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from swarmget.core.content import ContentKey
from swarmget.core.ranges import RangeSet
from swarmget.core.verification import Verification

if TYPE_CHECKING:  # (pydantic stays out of a plain ``swarmget get``'s imports)
    from swarmget.engine.sources import RangeSource
    from swarmget.protocol.content import (
        ContentGroup,
        ContentMember,
        ContentNews,
        ContentReport,
        JoinContent,
    )

MiB = 1024 * 1024


class ContentIndex(Protocol):
    """The hub's content index, as this node sees it (its requests are signed as this node:
    the caller is implicit). ``net.content_hub.ContentHubClient`` has this shape. Every
    method raises ``HubError`` (``HubUnavailable`` when the hub cannot be reached or
    answered nonsense, ``NotAContentMember`` when it forgot us); ``size`` is the content's,
    to check the answer against."""

    async def join(self, name: str, body: JoinContent) -> ContentGroup: ...

    async def news(self, name: str, body: ContentNews, *, size: int) -> ContentGroup: ...

    async def leave(self, name: str, *, keep_as_holder: bool = False) -> None: ...

    async def report(self, name: str, body: ContentReport, *, size: int) -> ContentGroup: ...


class Holders(Protocol):
    """Reaches LAN holders: the range source streaming verified ranges of ``key`` from
    ``member`` (its ``open_range`` raises ``SourceError``: ``ContentNotHeld``,
    ``ContentKeyMismatch``, ``SourceRetryable`` ... like any source). The node's adapter
    builds a ``net.content_peer.HolderSource``."""

    def source(self, member: ContentMember, key: ContentKey) -> RangeSource: ...


class Holdings(Protocol):
    """What this node can serve to its group (its holdings registry): never blocks."""

    def offer(self, key: ContentKey, path: Path, verified: RangeSet) -> None:
        """``path`` holds the ``verified`` ranges of ``key`` (replaces an earlier offer)."""

    def withdraw(self, key: ContentKey) -> None:
        """Serve nothing of ``key`` any more."""

    def pinned(self, key: ContentKey) -> AbstractContextManager[None]:
        """Keep ``key``'s file from being evicted while the block runs (the download of
        it); released on every exit (done, failed, cancelled)."""

    def own_copy(self, key: ContentKey) -> RangeSource | None:
        """This node's own copy of all of ``key`` (``same_content``), verified whole when
        it was kept and unchanged since, as a source reading the file directly (its
        ``open_range`` raises ``SourceError`` when the file is gone or changed); None when
        the node holds no such copy."""


@dataclass(frozen=True, kw_only=True)
class GroupConfig:
    """How a member behaves in its group (docs/fetch-once.md §4)."""

    #: seconds between news to the index (verified ranges, claims)
    news_every: float = 1.0
    #: claim a new grant when less than this many granted bytes are left unleased (while
    #: grants come whole: ``full_grant``; then: left to fetch), or less than what our links
    #: fetched in the last round, when that is more
    lookahead: int = 2 * MiB
    #: a grant this long is whole (the hub's ``ClaimBook.max_grant``): the pool is large
    full_grant: int = 4 * MiB
    #: seconds between looks at our links: short of half the lookahead, a round at once
    short_check: float = 0.25
    #: the index silent this long with our grants exhausted: the origin link may fetch anything
    silent_after: float = 10.0
    #: connection slots per LAN holder
    holder_slots: int = 2
    #: grants claimed one after the other in one round of news, at most
    claims_per_round: int = 8

    def __post_init__(self) -> None:
        if self.news_every <= 0 or self.silent_after <= 0 or self.short_check <= 0:
            raise ValueError("news_every, silent_after and short_check must be > 0")
        if self.lookahead < 0 or self.holder_slots < 1 or self.claims_per_round < 1:
            raise ValueError("lookahead >= 0, holder_slots >= 1, claims_per_round >= 1")
        if self.full_grant < 1:
            raise ValueError("full_grant must be >= 1")


@dataclass(frozen=True, kw_only=True)
class GroupOptions:
    """Sharing is on for a download given these: the index, how to reach holders, and this
    node's id (members with that id are ourselves)."""

    index: ContentIndex
    holders: Holders
    node_id: str | None = None
    holdings: Holdings | None = None
    #: stay in the index as a holder of the file when done (the share cache keeps it)
    keep_as_holder: bool = False
    config: GroupConfig = GroupConfig()


class SharingNote(enum.Enum):
    """Why a download did not share (or not fully): a fact, not text."""

    NOT_SHAREABLE = "not_shareable"  # no size, or no strong validator and no sha256
    RELAY = "relay"  # fetched through a relay (its manifest's blob is not the origin's URL)
    INDEX_UNREACHABLE = "index_unreachable"  # the join failed: origin only
    NO_CHECK = "no_check"  # no digest, no manifest, sampling off: holders not used (§6)
    INDEX_SILENT = "index_silent"  # the index went silent: the origin link took the rest
    #: the index granted nothing while bytes no source could serve were missing (this node
    #: already held the content, say): the origin link took the rest
    STARVED = "starved"
    #: this node's own copy could not be read (gone or changed): the origin link took the rest
    OWN_COPY_LOST = "own_copy_lost"


@dataclass(frozen=True, kw_only=True)
class SharingReport:
    """What the group fetch did for one download."""

    joined: bool = False
    holders_used: bool = False
    origin_bytes: int = 0  # received over our origin links (own and helpers) and checks
    lan_bytes: int = 0  # received from LAN holders
    #: bytes of the file taken from this node's own copy of the content (a file its share
    #: cache keeps): read from its disk, neither origin nor LAN bytes
    own_bytes: int = 0
    #: how the bytes from holders were verified (NONE: none were taken)
    holder_check: Verification = Verification.NONE
    banned_holders: tuple[str, ...] = ()  # node ids caught with bad bytes (and reported)
    notes: tuple[SharingNote, ...] = ()
    #: streams of our origin links (own and helpers) that we ended before the end they asked
    #: for (``SourceInfo.cut``): each wasted what the origin had sent into it
    origin_cuts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "joined": self.joined,
            "holders_used": self.holders_used,
            "origin_bytes": self.origin_bytes,
            "lan_bytes": self.lan_bytes,
            "own_bytes": self.own_bytes,
            "holder_check": self.holder_check.value,
            "banned_holders": list(self.banned_holders),
            "notes": [n.value for n in self.notes],
            "origin_cuts": self.origin_cuts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SharingReport:
        return cls(
            joined=bool(data["joined"]),
            holders_used=bool(data["holders_used"]),
            origin_bytes=int(data["origin_bytes"]),
            lan_bytes=int(data["lan_bytes"]),
            own_bytes=int(data.get("own_bytes", 0)),  # (a node from before it was counted)
            holder_check=Verification(data["holder_check"]),
            banned_holders=tuple(str(x) for x in data["banned_holders"]),
            notes=tuple(SharingNote(n) for n in data["notes"]),
            origin_cuts=int(data.get("origin_cuts", 0)),  # (a node from before it was counted)
        )
