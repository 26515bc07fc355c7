"""The hub's content index (fetch once per LAN, #15): who fetches or holds which content.

Theory of operation
-------------------
Design: ``docs/fetch-once.md`` sections 3 and 4. A content is known by its ``index_name``
(``core.content.ContentKey.index_name()``: a sha256, never a URL) *within one group* (the
hub groups nodes by LAN): ``(group, name)`` is one ``_Content``. Everything is soft state,
in this process's memory, rebuilt by the members themselves: after a hub restart their
next news is refused (``not_a_content_member``) and they join again with what they have
and the grants they still work on (``JoinContent.have`` / ``granted``).

Per content: a ``core.claims.ClaimBook`` (who was granted which origin bytes, who has
what), and the members as the hub knows them (their peer URL from their registration,
fetching or holding, whether they may fetch, when they joined and were last heard of, who
reported them). The operations, each a plain method that takes ``now`` (no clock here):

* ``join``: become a member, with the grants it says it works on (``ClaimBook.adopt``:
  a re-join after a hub restart); again: idempotent, it refreshes the member's facts and
  adds its ``have`` (its ``granted`` is then ignored: the book knows), except that a
  holder's join (``fetching`` False: a node announcing its kept file) never turns a
  fetching membership off: a node that holds a content and downloads it again stays a
  fetching member until its download leaves. A fetching join of a member that may fetch
  and has no unfinished grant gets one.
* ``news``: ``have`` grows; ``claim`` asks for the next grant (``ClaimBook.claim``);
  ``idle`` asks for the group endgame (``ClaimBook.steal``) when the pool has nothing left
  for it.
* ``leave``: gone, or (``keep_as_holder``) a holder of what it has: its grants go back to
  the pool either way.
* ``report``: a member reported by two distinct other members is dropped from the content
  (and may not join it again while the content lives).
* ``expire``: members whose registration ended (not live in their group any more), and
  fetching members silent for longer than ``silent_after``, leave every content; an empty
  content is forgotten.

The answer to ``join``, ``news`` and ``report`` is a ``ContentGroup``: the *other* members,
at most ``MAX_PEERS_PER_ANSWER`` (those that have the most first, then fetching ones), each
with at most ``MAX_ANSWER_RUNS`` runs of what it has (so the worst answer fits in
``MAX_HUB_ANSWER_BYTES``), and the grant when one was given.

Bounds: ``max_contents_per_node`` contents a node is a member of, ``max_members`` per
content, ``max_contents`` in all, ``MAX_MEMBER_RUNS`` runs of what one member has; beyond,
``ContentRefusal("content_limit")`` (or ``bad_request``) with a message saying which.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from swarmget.core.claims import ClaimBook
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.hub.refusal import HubRefusal
from swarmget.protocol.content import (
    MAX_RANGES,
    ContentGroup,
    ContentMember,
    ContentNews,
    ContentReport,
    JoinContent,
    ranges_of,
    wire_ranges,
)
from swarmget.protocol.hub import MAX_PEERS_PER_ANSWER

__all__ = [
    "MAX_ANSWER_RUNS",
    "MAX_CONTENTS",
    "MAX_CONTENTS_PER_NODE",
    "MAX_MEMBERS",
    "MAX_MEMBER_RUNS",
    "REPORTS_TO_DROP",
    "ContentIndex",
    "ContentRefusal",
    "Grant",
]

#: Contents one node may be a member of at once (fetching or holding).
MAX_CONTENTS_PER_NODE = 64
#: Members of one content (a LAN's worth of machines).
MAX_MEMBERS = 256
#: Contents the hub indexes in all.
MAX_CONTENTS = 50_000
#: Runs of what one member has that the hub keeps (a member fetches mostly in order).
MAX_MEMBER_RUNS = 16 * MAX_RANGES
#: Runs of one member's ``have`` an answer lists (its first ones): 64 members of 256 runs
#: of two 19-digit numbers stay well under ``MAX_HUB_ANSWER_BYTES``.
MAX_ANSWER_RUNS = 256
#: Distinct members whose reports drop a member from a content.
REPORTS_TO_DROP = 2

#: A grant handed out: ``"claim"`` (from the pool) or ``"steal"`` (the group endgame).
Grant = tuple[str, ByteRange]


class ContentRefusal(HubRefusal):
    """A content request the hub refuses: ``code`` is a row of ``HUB_ERRORS``
    (``not_a_content_member``, ``content_limit``, ``bad_request``, ``forbidden``)."""


@dataclass(slots=True)
class _Member:
    node_id: str
    url: str
    fetching: bool
    can_fetch: bool
    joined: float
    heard: float
    reporters: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Content:
    size: int
    book: ClaimBook
    members: dict[str, _Member] = field(default_factory=dict)
    #: members dropped after reports: refused if they join again
    dropped: set[str] = field(default_factory=set)


class ContentIndex:
    """The contents of every group, in memory (see the module docstring)."""

    def __init__(
        self,
        *,
        max_contents_per_node: int = MAX_CONTENTS_PER_NODE,
        max_members: int = MAX_MEMBERS,
        max_contents: int = MAX_CONTENTS,
        steal_after: float = 3.0,
    ) -> None:
        self.max_contents_per_node = max_contents_per_node
        self.max_members = max_members
        self.max_contents = max_contents
        self.steal_after = steal_after
        self._contents: dict[tuple[str, str], _Content] = {}
        self._of_node: dict[str, set[tuple[str, str]]] = {}
        #: grants handed out and reports received, for the hub's metrics
        self.grants_given = 0
        self.reports = 0

    # --- queries -------------------------------------------------------------------------------

    def count(self) -> int:
        """How many contents are indexed."""
        return len(self._contents)

    def groups(self) -> set[str]:
        """The groups that have at least one content."""
        return {group for group, _ in self._contents}

    def members(self, group: str, name: str) -> list[str]:
        content = self._contents.get((group, name))
        return list(content.members) if content else []

    def book(self, group: str, name: str) -> ClaimBook | None:
        """The content's claim book (for checks; None: not indexed)."""
        content = self._contents.get((group, name))
        return content.book if content else None

    def contents_of(self, node_id: str) -> set[tuple[str, str]]:
        return set(self._of_node.get(node_id, ()))

    # --- operations ----------------------------------------------------------------------------

    def join(
        self, group: str, name: str, node_id: str, url: str, body: JoinContent, *, now: float
    ) -> ContentGroup:
        """``node_id`` (registered, peer API at ``url``) joins; see the module docstring."""
        content = self._content_for_join(group, name, node_id, body.size)
        member = content.members.get(node_id)
        if member is None:
            self._check_room(content, node_id)
            member = _Member(node_id, url, body.fetching, body.can_fetch, joined=now, heard=now)
            content.members[node_id] = member
            self._of_node.setdefault(node_id, set()).add((group, name))
            content.book.join(node_id)
            self._adopt(content.book, node_id, ranges_of(body.granted), now)
        member.url, member.heard = url, now
        if body.fetching or not member.fetching:  # (a holder that also fetches stays fetching)
            member.fetching, member.can_fetch = body.fetching, body.can_fetch
        self._have(content, node_id, ranges_of(body.have))
        grant = None
        wants = body.fetching and self._may_fetch(member)  # (never a holder's join)
        if wants and not self._outstanding(content.book, node_id):
            grant = self._claim(content.book, node_id, now)
        return self._answer(name, content, node_id, grant)

    def news(
        self, group: str, name: str, node_id: str, url: str, body: ContentNews, *, now: float
    ) -> ContentGroup:
        """A member's news: what it verified since, and whether it wants a grant."""
        content, member = self._member(group, name, node_id)
        member.url, member.heard = url, now
        self._have(content, node_id, ranges_of(body.have))
        grant = None
        if self._may_fetch(member):
            if body.claim:
                grant = self._claim(content.book, node_id, now)
            if grant is None and body.idle:
                grant = self._steal(content.book, node_id, now)
        return self._answer(name, content, node_id, grant)

    def leave(self, group: str, name: str, node_id: str, *, keep_as_holder: bool) -> None:
        """The member is done: removed, or (``keep_as_holder``, and it has something) kept
        as a holder of what it has; its grants go back to the pool."""
        content, member = self._member(group, name, node_id)
        have = content.book.holdings()[node_id]
        if keep_as_holder and have:
            content.book.leave(node_id)
            content.book.join(node_id, have)
            member.fetching = member.can_fetch = False
            return
        self._remove(group, name, node_id)

    def report(
        self, group: str, name: str, reporter: str, body: ContentReport, *, now: float
    ) -> ContentGroup:
        """``reporter`` says member ``body.node_id`` served bad bytes; the second distinct
        reporter drops it. Reports about non-members are counted and ignored."""
        content, me = self._member(group, name, reporter)
        me.heard = now
        if body.node_id == reporter:
            raise ContentRefusal("bad_request", "node_id: a member cannot report itself")
        self.reports += 1
        accused = content.members.get(body.node_id)
        if accused is not None:
            accused.reporters.add(reporter)
            if len(accused.reporters) >= REPORTS_TO_DROP:
                if len(content.dropped) < self.max_members:
                    content.dropped.add(body.node_id)
                self._remove(group, name, body.node_id)
        return self._answer(name, content, reporter, None)

    def expire(self, group: str, live: Iterable[str], *, now: float, silent_after: float) -> int:
        """Members of ``group``'s contents that are not ``live`` (their registration ended),
        and fetching members not heard of for ``silent_after`` seconds, leave; returns how
        many memberships ended."""
        alive = set(live)
        gone = [
            (name, member.node_id)
            for (g, name), content in self._contents.items()
            if g == group
            for member in content.members.values()
            if member.node_id not in alive
            or (member.fetching and now - member.heard > silent_after)
        ]
        for name, node_id in gone:
            self._remove(group, name, node_id)
        return len(gone)

    def forget_node(self, node_id: str) -> int:
        """The node left the hub: it leaves every content (returns how many)."""
        keys = sorted(self._of_node.get(node_id, ()))
        for group, name in keys:
            self._remove(group, name, node_id)
        return len(keys)

    # --- inside --------------------------------------------------------------------------------

    def _content_for_join(self, group: str, name: str, node_id: str, size: int) -> _Content:
        content = self._contents.get((group, name))
        if content is None:
            if len(self._contents) >= self.max_contents:
                raise ContentRefusal(
                    "content_limit", f"the hub indexes {self.max_contents} contents already"
                )
            self._check_node_room(node_id)
            content = _Content(size, ClaimBook(size, steal_after=self.steal_after))
            self._contents[(group, name)] = content
        elif content.size != size:
            raise ContentRefusal(
                "bad_request", f"size: this content has {content.size} bytes, not {size}"
            )
        if node_id in content.dropped:
            raise ContentRefusal(
                "forbidden", f"reported by {REPORTS_TO_DROP} members: dropped from this content"
            )
        return content

    def _check_room(self, content: _Content, node_id: str) -> None:
        if len(content.members) >= self.max_members:
            raise ContentRefusal(
                "content_limit", f"this content has {self.max_members} members already"
            )
        self._check_node_room(node_id)

    def _check_node_room(self, node_id: str) -> None:
        if len(self._of_node.get(node_id, ())) >= self.max_contents_per_node:
            raise ContentRefusal(
                "content_limit",
                f"a node may be a member of {self.max_contents_per_node} contents at most",
            )

    def _member(self, group: str, name: str, node_id: str) -> tuple[_Content, _Member]:
        content = self._contents.get((group, name))
        member = content.members.get(node_id) if content else None
        if content is None or member is None:
            raise ContentRefusal(
                "not_a_content_member", "not a member of this content (any more): join it again"
            )
        return content, member

    def _have(self, content: _Content, node_id: str, ranges: RangeSet) -> None:
        bounds = ranges.bounds()
        if bounds is not None and bounds.end > content.size:
            raise ContentRefusal(
                "bad_request", f"have: a range lies beyond the content's {content.size} bytes"
            )
        runs = content.book.holdings()[node_id]
        for r in ranges:
            runs.add(r)
        if len(runs) > MAX_MEMBER_RUNS:
            raise ContentRefusal(
                "bad_request", f"have: more than {MAX_MEMBER_RUNS} separate runs in all"
            )
        content.book.have(node_id, ranges)

    @staticmethod
    def _may_fetch(member: _Member) -> bool:
        return member.fetching and member.can_fetch

    @staticmethod
    def _outstanding(book: ClaimBook, node_id: str) -> bool:
        """Whether the member still has granted bytes it does not have."""
        have = book.holdings()[node_id]
        return any(have.missing(r) for r in book.granted(node_id))

    def _claim(self, book: ClaimBook, node_id: str, now: float) -> ByteRange | None:
        grant = book.claim(node_id, now=now)
        self.grants_given += grant is not None
        return grant

    def _steal(self, book: ClaimBook, node_id: str, now: float) -> ByteRange | None:
        grant = book.steal(node_id, now=now)
        self.grants_given += grant is not None
        return grant

    @staticmethod
    def _adopt(book: ClaimBook, node_id: str, granted: RangeSet, now: float) -> None:
        """A re-joining member's grants (the hub restarted): rebuilt from what it says."""
        if granted:
            book.adopt(node_id, granted, now=now)

    def _remove(self, group: str, name: str, node_id: str) -> None:
        content = self._contents.get((group, name))
        if content is None or content.members.pop(node_id, None) is None:
            return
        content.book.leave(node_id)
        keys = self._of_node.get(node_id)
        if keys is not None:
            keys.discard((group, name))
            if not keys:
                del self._of_node[node_id]
        if not content.members:
            del self._contents[(group, name)]

    def _answer(
        self, name: str, content: _Content, asker: str, grant: ByteRange | None
    ) -> ContentGroup:
        holdings = content.book.holdings()
        others = [m for m in content.members.values() if m.node_id != asker]
        others.sort(
            key=lambda m: (-holdings[m.node_id].total(), not m.fetching, m.joined, m.node_id)
        )
        listed = [
            ContentMember.model_construct(
                node_id=m.node_id,
                url=m.url,
                have=wire_ranges(holdings[m.node_id])[:MAX_ANSWER_RUNS],
                fetching=m.fetching,
            )
            for m in others[:MAX_PEERS_PER_ANSWER]
        ]
        return ContentGroup.model_construct(
            name=name,
            size=content.size,
            members=listed,
            grant=None if grant is None else (grant.start, grant.end),
        )
