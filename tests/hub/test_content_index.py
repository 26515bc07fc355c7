"""The hub's content index as a model (fetch once, #15): pure, time chosen by the test.

Unit tests for the bounds, the answers' caps and order, expiry and re-joining; and a state
machine where members of two groups join, send news, claim, steal, leave, get reported and
expire in any order: the claim books keep their invariants, the index and the books agree
on who is a member, and no answer lists a member twice or the asker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from swarmget.core.content import ContentKey
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.verification import Verification
from swarmget.hub.content_index import (
    MAX_ANSWER_RUNS,
    MAX_MEMBER_RUNS,
    ContentIndex,
    ContentRefusal,
)
from swarmget.protocol.content import (
    MAX_RANGES,
    ContentGroup,
    ContentNews,
    ContentReport,
    JoinContent,
)
from swarmget.protocol.hub import MAX_HUB_ANSWER_BYTES, MAX_PEERS_PER_ANSWER
from swarmget.testing.fakes import nid

_T = TypeVar("_T")
MiB = 1024 * 1024
SIZE = 8 * MiB
NAME = ContentKey(url="https://h/f", size=SIZE, etag='"a"').index_name()
NAME2 = ContentKey(url="https://h/g", size=SIZE, etag='"a"').index_name()
G = "10.0.0.0/24"
A, B, C = nid("a"), nid("b"), nid("c")


def url(node: str) -> str:
    return f"http://10.0.0.1:7500/{node}"


def join(index: ContentIndex, node: str, now: float = 0.0, **kw: object) -> ContentGroup:
    return index.join(G, NAME, node, url(node), JoinContent(size=SIZE, **kw), now=now)  # type: ignore[arg-type]


def news(index: ContentIndex, node: str, now: float = 0.0, **kw: object) -> ContentGroup:
    return index.news(G, NAME, node, url(node), ContentNews(**kw), now=now)  # type: ignore[arg-type]


# --- answers --------------------------------------------------------------------------------


def test_answers_list_the_others_most_have_first_and_fetching_before_holders() -> None:
    index = ContentIndex()
    join(index, A, have=[(0, MiB)], fetching=False)
    join(index, B, have=[(MiB, 3 * MiB)])
    join(index, C, have=[(3 * MiB, 4 * MiB)])
    answer = news(index, A)
    assert [m.node_id for m in answer.members] == [B, C]
    d = nid("d")
    seen = join(index, d)
    assert [m.node_id for m in seen.members] == [B, C, A]  # C and A have as much: fetching first
    assert [m.fetching for m in seen.members] == [True, True, False]


def test_answers_are_capped_and_the_worst_answer_fits_the_clients_limit() -> None:
    index = ContentIndex()
    step = 2 * (MAX_ANSWER_RUNS + 10)
    odd = [(i, i + 1) for i in range(0, step, 2)]  # more runs than an answer lists
    for i in range(MAX_PEERS_PER_ANSWER + 6):
        index.join(G, NAME, nid(f"m{i}"), "http://10.0.0.1:7500", JoinContent(size=SIZE), now=0.0)
        chunks = [odd[k : k + MAX_RANGES] for k in range(0, len(odd), MAX_RANGES)]
        for chunk in chunks:
            index.news(G, NAME, nid(f"m{i}"), "u", ContentNews(have=chunk), now=0.0)
    answer = join(index, A)
    assert len(answer.members) == MAX_PEERS_PER_ANSWER
    assert all(len(m.have) == MAX_ANSWER_RUNS for m in answer.members)
    ContentGroup.model_validate_json(answer.model_dump_json())  # valid as the client reads it
    worst = answer.model_copy(
        update={
            "members": [
                m.model_copy(
                    update={
                        "have": [
                            (2**62 + 2 * i, 2**62 + 2 * i + 1) for i in range(MAX_ANSWER_RUNS)
                        ],
                        "url": "h" * 300,
                    }
                )
                for m in answer.members
            ]
        }
    )
    assert len(json.dumps(worst.model_dump(mode="json"))) < MAX_HUB_ANSWER_BYTES


# --- bounds --------------------------------------------------------------------------------------


def test_bounds_are_refused_with_content_limit() -> None:
    index = ContentIndex(max_contents_per_node=1, max_members=2, max_contents=2)
    join(index, A)
    join(index, B)
    with pytest.raises(ContentRefusal, match="2 members") as full:
        join(index, C)
    assert full.value.code == "content_limit"
    with pytest.raises(ContentRefusal, match="1 contents at most") as node_full:
        index.join(G, NAME2, A, "u", JoinContent(size=SIZE), now=0.0)
    assert node_full.value.code == "content_limit"
    index.join("other", NAME, C, "u", JoinContent(size=SIZE), now=0.0)
    with pytest.raises(ContentRefusal, match="2 contents already"):
        index.join("third", NAME, nid("x"), "u", JoinContent(size=SIZE), now=0.0)
    assert index.count() == 2


def test_a_member_with_too_many_runs_is_refused() -> None:
    index = ContentIndex()
    join(index, A)
    for k in range(MAX_MEMBER_RUNS // MAX_RANGES):
        runs = [(2 * (k * MAX_RANGES + i), 2 * (k * MAX_RANGES + i) + 1) for i in range(MAX_RANGES)]
        news(index, A, have=runs)
    with pytest.raises(ContentRefusal, match="separate runs") as many:
        news(index, A, have=[(SIZE - 2, SIZE - 1)])
    assert many.value.code == "bad_request"


def test_have_beyond_the_size_and_another_size_are_refused() -> None:
    index = ContentIndex()
    join(index, A)
    with pytest.raises(ContentRefusal, match="beyond"):
        news(index, A, have=[(0, SIZE + 1)])
    with pytest.raises(ContentRefusal, match="size"):
        index.join(G, NAME, B, "u", JoinContent(size=SIZE + 1), now=0.0)
    assert index.members(G, NAME) == [A]


def test_non_members_get_not_a_content_member() -> None:
    index = ContentIndex()
    for call in (
        lambda: news(index, A),
        lambda: index.leave(G, NAME, A, keep_as_holder=False),
        lambda: index.report(G, NAME, A, _report(B), now=0.0),
    ):
        with pytest.raises(ContentRefusal) as exc:
            call()
        assert exc.value.code == "not_a_content_member"


def _report(node: str) -> ContentReport:
    return ContentReport(node_id=node, start=0, end=1, verification=Verification.SAMPLED)


# --- grants and their lifetime --------------------------------------------------------------


def test_a_pure_receiver_and_a_holder_are_never_granted() -> None:
    index = ContentIndex()
    assert join(index, A, can_fetch=False).grant is None
    assert news(index, A, claim=True, idle=True).grant is None
    assert join(index, B, fetching=False, have=[(0, MiB)]).grant is None
    assert join(index, C).grant is not None


def _fetching(index: ContentIndex, asker: str) -> dict[str, bool]:
    """Who is fetching, as ``asker``'s next answer lists the others."""
    return {m.node_id: m.fetching for m in news(index, asker).members}


def test_a_holders_join_keeps_a_fetching_membership_fetching() -> None:
    # A downloads the content; meanwhile its announcer joins it as a holder of a kept file
    index = ContentIndex()
    join(index, B, fetching=False, have=[(0, MiB)])
    assert join(index, A).grant is not None
    assert join(index, A, fetching=False, can_fetch=False, have=[(MiB, 2 * MiB)]).grant is None
    assert _fetching(index, B) == {A: True}
    assert news(index, A, claim=True).grant is not None  # still claims grants
    book = index.book(G, NAME)
    assert book is not None
    assert book.holdings()[A].contains(ByteRange(MiB, 2 * MiB))  # its have counted
    book.check_invariants()
    # its download ends: a holder from now on; a holder's join leaves it a holder
    index.leave(G, NAME, A, keep_as_holder=True)
    assert _fetching(index, B) == {A: False}
    join(index, A, fetching=False, can_fetch=False, have=[(0, MiB)])
    assert _fetching(index, B) == {A: False}
    # a download of a held content makes it fetching again
    join(index, A)
    assert _fetching(index, B) == {A: True}


def test_a_holders_join_does_not_save_a_dead_download_from_expiring() -> None:
    index = ContentIndex()
    join(index, A, now=0.0)
    join(index, A, now=10.0, fetching=False, can_fetch=False, have=[(0, MiB)])
    assert index.expire(G, [A], now=20.0, silent_after=15.0) == 0  # heard at 10
    assert index.expire(G, [A], now=26.0, silent_after=15.0) == 1  # fetching, silent since


def test_a_silent_fetching_member_expires_but_a_holder_stays_while_registered() -> None:
    index = ContentIndex()
    join(index, A, now=0.0)
    join(index, B, now=0.0, fetching=False, have=[(0, MiB)])
    join(index, C, now=0.0)
    news(index, C, now=10.0)
    assert index.expire(G, [A, B, C], now=16.0, silent_after=15.0) == 1
    assert sorted(index.members(G, NAME)) == sorted([B, C])
    assert index.expire(G, [C], now=16.0, silent_after=15.0) == 1  # B's registration ended
    assert index.members(G, NAME) == [C]
    assert index.expire(G, [], now=16.0, silent_after=15.0) == 1
    assert index.count() == 0
    assert index.contents_of(C) == set()


def test_a_node_that_leaves_the_hub_leaves_every_content() -> None:
    index = ContentIndex()
    join(index, A)
    index.join(G, NAME2, A, "u", JoinContent(size=SIZE), now=0.0)
    join(index, B)
    assert index.forget_node(A) == 2
    assert index.members(G, NAME) == [B]
    assert index.count() == 1
    book = index.book(G, NAME)
    assert book is not None
    assert book.pool().total() + book.granted(B).total() == SIZE


def test_a_rejoin_after_a_restart_rebuilds_grants_and_holdings() -> None:
    index = ContentIndex()
    assert join(index, A, have=[(0, MiB)], granted=[(MiB, 3 * MiB)]).grant is None
    assert join(index, B, granted=[(2 * MiB, 4 * MiB)]).grant is None  # it still has work
    book = index.book(G, NAME)
    assert book is not None
    assert book.granted(A) == RangeSet([ByteRange(MiB, 3 * MiB)])
    assert book.granted(B) == RangeSet([ByteRange(3 * MiB, 4 * MiB)])
    assert news(index, B, have=[(3 * MiB, 4 * MiB)], claim=True).grant == (4 * MiB, 5 * MiB)
    book.check_invariants()


def test_two_reports_by_distinct_members_drop_a_member_for_good() -> None:
    index = ContentIndex()
    for node in (A, B, C):
        join(index, node)
    with pytest.raises(ContentRefusal, match="itself"):
        index.report(G, NAME, B, _report(B), now=0.0)
    index.report(G, NAME, B, _report(A), now=0.0)
    index.report(G, NAME, B, _report(A), now=0.0)
    assert A in index.members(G, NAME)
    answer = index.report(G, NAME, C, _report(A), now=0.0)
    assert A not in [m.node_id for m in answer.members]
    assert A not in index.members(G, NAME)
    with pytest.raises(ContentRefusal) as again:
        join(index, A)
    assert again.value.code == "forbidden"
    index.report(G, NAME, C, _report(nid("stranger")), now=0.0)  # counted, nothing else
    assert index.reports == 4


# --- any order ---------------------------------------------------------------------------------

nodes = st.sampled_from([nid(n) for n in "abcde"])
groups = st.sampled_from(["g1", "g2"])
names = st.sampled_from([NAME, NAME2])


def _runs(data: st.DataObject) -> list[tuple[int, int]]:
    cuts = sorted(set(data.draw(st.lists(st.integers(0, SIZE), max_size=6))))
    return [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]


def _attempt(call: Callable[[], _T]) -> _T | str:
    """What ``call`` returns, or the code of the refusal it raised."""
    try:
        return call()
    except ContentRefusal as exc:
        return exc.code


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.index = ContentIndex(max_members=4, max_contents_per_node=3, steal_after=3.0)
        self.now = 0.0

    def _check(self, answer: ContentGroup, asker: str) -> None:
        ids = [m.node_id for m in answer.members]
        assert len(ids) == len(set(ids))
        assert asker not in ids

    @rule(group=groups, name=names, node=nodes, data=st.data())
    def join(self, group: str, name: str, node: str, data: st.DataObject) -> None:
        body = JoinContent(
            size=SIZE,
            have=_runs(data),
            granted=_runs(data),
            fetching=data.draw(st.booleans()),
            can_fetch=data.draw(st.booleans()),
        )
        answer = _attempt(lambda: self.index.join(group, name, node, "u", body, now=self.now))
        if isinstance(answer, str):
            assert answer in ("content_limit", "forbidden")
        else:
            self._check(answer, node)

    @rule(group=groups, name=names, node=nodes, data=st.data())
    def news(self, group: str, name: str, node: str, data: st.DataObject) -> None:
        body = ContentNews(
            have=_runs(data), claim=data.draw(st.booleans()), idle=data.draw(st.booleans())
        )
        member = node in self.index.members(group, name)
        answer = _attempt(lambda: self.index.news(group, name, node, "u", body, now=self.now))
        if isinstance(answer, str):
            assert not member
            assert answer == "not_a_content_member"
            return
        self._check(answer, node)
        if answer.grant is not None:
            book = self.index.book(group, name)
            assert book is not None
            start, end = answer.grant
            assert book.granted(node).contains(ByteRange(start, end))

    @rule(group=groups, name=names, node=nodes, keep=st.booleans())
    def leave(self, group: str, name: str, node: str, keep: bool) -> None:
        member = node in self.index.members(group, name)
        done = _attempt(lambda: self.index.leave(group, name, node, keep_as_holder=keep))
        assert done == (None if member else "not_a_content_member")

    @rule(group=groups, name=names, reporter=nodes, accused=nodes)
    def report(self, group: str, name: str, reporter: str, accused: str) -> None:
        answer = _attempt(
            lambda: self.index.report(group, name, reporter, _report(accused), now=self.now)
        )
        if isinstance(answer, str):
            assert answer in ("not_a_content_member", "bad_request")
        else:
            self._check(answer, reporter)
            assert accused not in self.index.members(group, name) or accused != reporter

    @rule(seconds=st.floats(0, 10))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(group=groups, live=st.sets(nodes))
    def expire(self, group: str, live: set[str]) -> None:
        self.index.expire(group, live, now=self.now, silent_after=15.0)

    @rule(node=nodes)
    def node_leaves_the_hub(self, node: str) -> None:
        self.index.forget_node(node)
        assert self.index.contents_of(node) == set()

    @invariant()
    def consistent(self) -> None:
        for group in ("g1", "g2"):
            for name in (NAME, NAME2):
                book = self.index.book(group, name)
                members = self.index.members(group, name)
                if book is None:
                    assert members == []
                    continue
                assert members, "an empty content is forgotten"
                assert sorted(book.members()) == sorted(members)
                assert len(members) <= 4
                book.check_invariants()
                for node in members:
                    assert (group, name) in self.index.contents_of(node)
        for node in (nid(n) for n in "abcde"):
            keys = self.index.contents_of(node)
            assert len(keys) <= 3
            for group, name in keys:
                assert node in self.index.members(group, name)


IndexMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestContentIndex = IndexMachine.TestCase
