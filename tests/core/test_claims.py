"""The group's claim book (issue #15): origin work split among members, none lost on a death."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from swarmget.core.claims import ClaimBook
from swarmget.core.ranges import ByteRange, RangeSet

MiB = 1024 * 1024
SIZE = 64 * MiB


def rs(*pairs: tuple[int, int]) -> RangeSet:
    return RangeSet(ByteRange(a, b) for a, b in pairs)


def test_claims_split_the_content_among_members_once() -> None:
    book = ClaimBook(SIZE)
    for m in ("a", "b", "c", "d"):
        book.join(m)
    grants: list[ByteRange] = []
    for _ in range(200):
        progressed = False
        for m in book.members():
            g = book.claim(m, now=0.0)
            if g is not None:
                grants.append(g)
                progressed = True
        book.check_invariants()
        if not progressed:
            break
    assert sum(g.length for g in grants) == SIZE  # every byte granted exactly once
    assert RangeSet(grants) == rs((0, SIZE))
    assert all(g.start % MiB == 0 for g in grants)
    assert max(g.length for g in grants) <= 16 * MiB
    assert book.pool() == RangeSet()


def test_grants_shrink_as_the_pool_empties() -> None:
    book = ClaimBook(SIZE, max_grant=64 * MiB)
    book.join("a")
    book.join("b")
    first = book.claim("a", now=0.0)
    assert first == ByteRange(0, 16 * MiB)  # 64 MiB / (2 members * 2 grants)
    later = [book.claim("b", now=0.0) for _ in range(5)]
    assert [g.length for g in later if g] == [12 * MiB, 9 * MiB, 7 * MiB, 5 * MiB, 4 * MiB]


def test_a_member_is_granted_only_what_it_lacks() -> None:
    book = ClaimBook(SIZE)
    book.join("a", have=[ByteRange(0, 8 * MiB)])  # e.g. a resumed download
    book.join("b")
    assert book.pool() == rs((8 * MiB, SIZE))
    g = book.claim("b", now=0.0)
    assert g is not None
    assert g.start == 8 * MiB


def test_what_someone_has_leaves_the_pool() -> None:
    book = ClaimBook(SIZE)
    book.join("a")
    book.have("a", [ByteRange(10 * MiB, 20 * MiB)])
    assert book.pool() == rs((0, 10 * MiB), (20 * MiB, SIZE))
    assert book.holdings() == {"a": rs((10 * MiB, 20 * MiB))}


def test_the_first_requester_dies_and_its_unshared_grants_go_back() -> None:
    book = ClaimBook(SIZE)
    for m in ("first", "b", "c"):
        book.join(m)
    g = book.claim("first", now=0.0)
    assert g is not None
    half = (g.start + g.end) // 2
    book.have("first", [ByteRange(g.start, half)])
    book.have("b", [ByteRange(g.start, g.start + MiB)])  # b got its first MiB over the LAN
    back = book.leave("first")
    assert back == rs((g.start + MiB, g.end))  # only what nobody else has
    book.check_invariants()
    regranted = book.claim("c", now=0.0)
    assert regranted is not None
    assert regranted.start == g.start + MiB  # the lowest pool bytes: the dead member's
    assert book.leave("first") == RangeSet()  # a second notice changes nothing


def test_a_chain_of_deaths_loses_no_byte() -> None:
    book = ClaimBook(SIZE)
    book.join("a")
    book.join("b")
    g = book.claim("a", now=0.0)
    assert g is not None
    book.have("a", [g])
    book.have("b", [g])  # b got it from a
    book.leave("a")  # b still has it: nothing back
    assert not book.pool().overlaps(g)
    book.join("c")
    book.leave("b")  # now nobody has it: back to the pool
    assert book.pool().contains(g)
    book.check_invariants()


def test_the_group_endgame_splits_a_slow_members_unreported_grant() -> None:
    book = ClaimBook(16 * MiB, max_grant=16 * MiB, grants_per_member=1)
    book.join("slow")
    assert book.claim("slow", now=0.0) == ByteRange(0, 16 * MiB)  # alone: it takes everything
    book.join("fast")
    book.have("slow", [ByteRange(0, 4 * MiB)])  # what it fetched so far
    assert book.claim("fast", now=0.0) is None  # the pool is empty
    steal = book.steal("fast", now=10.0)
    assert steal == ByteRange(10 * MiB, 16 * MiB)  # the far half of [4, 16) MiB
    assert book.contested() == rs((10 * MiB, 16 * MiB))
    book.join("third")
    again = book.steal("third", now=10.0)
    assert again == ByteRange(7 * MiB, 10 * MiB)  # never a contested byte
    book.check_invariants()
    book.have("fast", [ByteRange(10 * MiB, 16 * MiB)])
    book.have("third", [ByteRange(7 * MiB, 10 * MiB)])
    book.have("slow", [ByteRange(4 * MiB, 7 * MiB)])
    assert book.steal("fast", now=10.0) is None  # everything reported: nothing left to split
    book.check_invariants()


def test_a_short_run_is_copied_whole_but_never_thrice() -> None:
    book = ClaimBook(8 * MiB, max_grant=8 * MiB, grants_per_member=1)
    book.join("a")
    book.claim("a", now=0.0)
    book.have("a", [ByteRange(0, 6 * MiB + 1)])
    book.join("b")
    # [6 MiB + 1, 8 MiB) is too short to halve: b gets a second copy of all of it
    assert book.steal("b", now=10.0) == ByteRange(6 * MiB + 1, 8 * MiB)
    assert book.contested() == rs((6 * MiB + 1, 8 * MiB))
    book.join("c")
    assert book.steal("c", now=10.0) is None  # never a third copy


def test_a_thief_that_dies_gives_back_nothing_the_slow_member_still_holds() -> None:
    book = ClaimBook(8 * MiB, max_grant=8 * MiB, grants_per_member=1)
    book.join("slow")
    book.claim("slow", now=0.0)
    book.join("thief")
    assert book.steal("thief", now=10.0) == ByteRange(4 * MiB, 8 * MiB)
    assert book.leave("thief") == RangeSet()  # still granted to slow
    assert book.leave("slow") == rs((0, 8 * MiB))
    book.check_invariants()


def test_only_old_grants_are_split_and_only_for_an_empty_pool() -> None:
    book = ClaimBook(32 * MiB, max_grant=8 * MiB, steal_after=3.0)
    book.join("a")
    book.join("b")
    assert book.claim("a", now=0.0) == ByteRange(0, 8 * MiB)
    assert book.steal("b", now=5.0) is None  # the pool still has bytes: claim them
    for _ in range(10):
        book.claim("b", now=2.0)
    assert book.pool() == RangeSet()
    young = book.steal("a", now=4.0)  # b's grants are 2 s old: too young to split
    assert young is None
    old = book.steal("b", now=3.0)  # a's grant is 3 s old
    assert old == ByteRange(4 * MiB, 8 * MiB)
    assert book.steal("a", now=5.0) is not None  # now b's are old too
    book.check_invariants()


def test_bad_input_is_refused() -> None:
    book = ClaimBook(SIZE)
    with pytest.raises(ValueError, match="not a member"):
        book.claim("x", now=0.0)
    with pytest.raises(ValueError, match="not a member"):
        book.steal("x", now=10.0)
    book.join("a")
    with pytest.raises(ValueError, match="beyond"):
        book.have("a", [ByteRange(0, SIZE + 1)])
    with pytest.raises(ValueError, match="min_grant"):
        ClaimBook(SIZE, min_grant=0)
    with pytest.raises(ValueError, match="size"):
        ClaimBook(-1)
    with pytest.raises(ValueError, match="steal_after"):
        ClaimBook(SIZE, steal_after=float("nan"))


def test_an_empty_content_grants_nothing() -> None:
    book = ClaimBook(0)
    book.join("a")
    assert book.claim("a", now=0.0) is None
    book.check_invariants()


def test_a_rebuilt_book_adopts_what_its_members_say_they_were_granted() -> None:
    """After a hub restart the members join a new book with their grants: those still in
    the pool become theirs again (dated then); what another has or was granted stays so."""
    book = ClaimBook(8 * MiB, steal_after=3.0)
    book.join("a", [ByteRange(0, MiB)])
    assert book.adopt("a", [ByteRange(0, 2 * MiB)], now=5.0) == rs((MiB, 2 * MiB))
    book.join("b")
    assert book.adopt("b", [ByteRange(MiB, 3 * MiB)], now=5.0) == rs((2 * MiB, 3 * MiB))
    assert book.granted("b") == rs((2 * MiB, 3 * MiB))
    assert book.pool() == rs((3 * MiB, 8 * MiB))
    book.check_invariants()
    assert book.claim("b", now=5.0) == ByteRange(3 * MiB, 5 * MiB)
    with pytest.raises(ValueError, match="beyond"):
        book.adopt("b", [ByteRange(0, 9 * MiB)], now=5.0)
    with pytest.raises(ValueError, match="not a member"):
        book.adopt("z", [], now=5.0)


names = st.sampled_from(["a", "b", "c", "d"])


class ClaimMachine(RuleBasedStateMachine):
    """Members join, claim, verify (from the origin or from each other) and die in any order:
    no byte is lost, no byte is granted twice, and the survivors can always finish."""

    @initialize(size=st.integers(0, 40 * MiB), align=st.sampled_from([1, 4096, MiB]))
    def setup(self, size: int, align: int) -> None:
        self.book = ClaimBook(size, min_grant=MiB, max_grant=8 * MiB, align=align)
        self.size = size

    @rule(name=names)
    def join(self, name: str) -> None:
        self.book.join(name)

    @precondition(lambda self: bool(self.book.members()))
    @rule(data=st.data())
    def claim_and_fetch_some(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.book.members()))
        g = self.book.claim(name, now=0.0)
        if g is not None and data.draw(st.booleans()):
            end = data.draw(st.integers(g.start, g.end))
            self.book.have(name, [ByteRange(g.start, end)])

    @precondition(lambda self: bool(self.book.members()))
    @rule(data=st.data())
    def steal_when_idle(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.book.members()))
        g = self.book.steal(name, now=10.0)
        if g is not None:
            assert not self.book.pool().overlaps(g)
            if data.draw(st.booleans()):
                self.book.have(name, [g])

    @precondition(lambda self: len(self.book.members()) > 1)
    @rule(data=st.data())
    def share_over_the_lan(self, data: st.DataObject) -> None:
        src, dst = data.draw(st.permutations(self.book.members()))[:2]
        self.book.have(dst, self.book.holdings()[src])

    @rule(name=names, data=st.data())
    def join_again_with_grants(self, name: str, data: st.DataObject) -> None:
        """A member re-joins a rebuilt book (the hub restarted) saying what it was granted."""
        start = data.draw(st.integers(0, self.size))
        end = data.draw(st.integers(start, self.size))
        self.book.join(name)
        granted = [ByteRange(start, end)] if start < end else []
        adopted = self.book.adopt(name, granted, now=0.0)
        for r in adopted:
            assert self.book.granted(name).contains(r)

    @precondition(lambda self: bool(self.book.members()))
    @rule(data=st.data())
    def die(self, data: st.DataObject) -> None:
        self.book.leave(data.draw(st.sampled_from(self.book.members())))

    @invariant()
    def consistent(self) -> None:
        self.book.check_invariants()

    def teardown(self) -> None:
        """The members fetch what they were granted; a survivor claims and fetches the rest:
        the group then has everything."""
        for name in self.book.members():
            self.book.have(name, self.book.granted(name))
        self.book.join("survivor")
        for _ in range(1000):
            g = self.book.claim("survivor", now=0.0)
            if g is None:
                break
            self.book.have("survivor", [g])
        assert self.book.group_has() == RangeSet([ByteRange(0, self.size)] if self.size else [])


ClaimMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestClaimBook = ClaimMachine.TestCase
