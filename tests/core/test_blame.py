"""The blame rules for bad bytes, as a table of facts and verdicts."""

from __future__ import annotations

from swarmget.core.blame import PieceFailed, SampleDiffered, Verdict, judge
from swarmget.core.ranges import ByteRange

PIECE = ByteRange(0, 1000)


def test_a_piece_from_one_source_bans_it_and_is_fetched_again() -> None:
    verdict = judge(PieceFailed(piece=0, range=PIECE, contributors={"helper": 1000}))
    assert verdict.ban == ("helper",)
    assert verdict.strike == ()
    assert verdict.refetch == (PIECE,)
    assert dict(verdict.blamed) == {"helper": 1000}
    assert not verdict.rehash  # the running hash only takes pieces that passed


def test_a_piece_from_several_sources_strikes_each_and_bans_none() -> None:
    verdict = judge(PieceFailed(piece=3, range=PIECE, contributors={"a": 600, "origin": 400}))
    assert verdict.ban == ()
    assert set(verdict.strike) == {"a", "origin"}
    assert verdict.refetch == (PIECE,)
    assert dict(verdict.blamed) == {"a": 600, "origin": 400}


def test_a_piece_that_was_on_disk_already_blames_nobody_but_is_fetched_again() -> None:
    verdict = judge(PieceFailed(piece=1, range=PIECE, contributors={}))
    assert (verdict.ban, verdict.strike, dict(verdict.blamed)) == ((), (), {})
    assert verdict.refetch == (PIECE,)
    assert not verdict.nothing


def test_a_sample_that_differs_bans_distrusts_and_sends_back_all_the_helper_sent() -> None:
    sent = (ByteRange(0, 100), ByteRange(500, 800))
    fact = SampleDiffered(source_id="h", window=ByteRange(520, 540), delivered=sent)
    verdict = judge(fact)
    assert verdict.ban == verdict.distrust == ("h",)
    assert verdict.refetch == sent
    assert verdict.rehash
    assert dict(verdict.blamed) == {"h": 400}


def test_a_helper_caught_already_gets_nothing_more() -> None:
    fact = SampleDiffered(
        source_id="h", window=ByteRange(0, 10), delivered=(ByteRange(0, 10),), distrusted=True
    )
    assert judge(fact) == Verdict()
    assert judge(fact).nothing


def test_the_verdict_does_not_share_the_callers_mapping() -> None:
    contributors = {"a": 10}
    verdict = judge(PieceFailed(piece=0, range=PIECE, contributors=contributors))
    contributors["b"] = 5
    assert dict(verdict.blamed) == {"a": 10}
