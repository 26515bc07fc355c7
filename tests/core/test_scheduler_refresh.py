"""What the scheduler works out once per ``SchedulerConfig.refresh`` (issue #17, third round)
keeps its rules: every decision, taken from views up to ``refresh`` old, is checked against
the ledger as it is when carried out.

* no piece is lost (claimed, leased and missing tile the file; the download completes);
* a copy (``Duplicate``) of a piece that has more than one is only made on a source faster
  than every live copy (not silent, and not late in the hedge: no first byte after
  ``hedge_late`` of its source's usual waits), all of them measured; a split (steal or
  rescue) only of a piece with one lease;
* a source that shows no progress (``quiet``: it holds work, all silent) gets no new work;
* a helper that hung while it held nothing is noticed on its next lease by its usual wait
  for a first byte, not after ``config.silence``.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from swarmget.core.pieces import Lease, PieceMap
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.scheduler import Assign, Scheduler, SchedulerConfig
from swarmget.core.selection import Duplicate, Pick, Selector, Split
from swarmget.core.sources import Source, SourceBook
from swarmget.testing.simswarm import SimSwarm

KiB = 1024
MiB = 1024 * KiB

CONFIG = SchedulerConfig(
    min_piece=4 * KiB,
    max_piece=64 * KiB,
    min_steal=1 * KiB,
    stall_timeout=3.0,
    max_failures=3,
    backoff_initial=0.1,
    backoff_max=1.0,
    endgame_min_eta=0.1,
    rescue_backlog=16 * KiB,
    rescue_keep=0.2,
    silence=1.0,
)


class _Checked(Scheduler):
    """The scheduler, with each pick checked against the ledger when it is carried out."""

    picks = 0

    def _carry_out(self, pick: Pick, src: Source, now: float) -> Assign:
        assert not src.quiet(now, self.config), f"{src.id} shows no progress, got {pick}"
        if isinstance(pick, Split | Duplicate):
            assert self._pieces.has(pick.piece), "a pick of a piece no longer in the ledger"
            leases = [self._pieces.lease(i) for i in pick.piece.leases]
            if isinstance(pick, Split):
                assert len(leases) == 1, f"split of a piece with {len(leases)} copies"
            elif len(leases) > 1:  # a further copy: faster than every live copy
                mine = src.slot_rate(now)
                for x in leases:
                    if self._selector._silent(x, now) or self._selector._late(x, now):
                        continue  # it holds no copy back (``Selector._lead``)
                    theirs = x.rate(now)
                    assert theirs is not None, f"a copy while {x} is not measured yet"
                    assert mine is None or mine > 1.2 * theirs, f"a copy slower than {x}"
        self.picks += 1
        return super()._carry_out(pick, src, now)


def _swarm(size: int, config: SchedulerConfig) -> SimSwarm:
    sim = SimSwarm(size, config)
    sim.scheduler = _Checked(size, config)
    return sim


faults = st.lists(
    st.tuples(st.integers(0, 11), st.sampled_from(["freeze", "thaw", "kill"]), st.integers(1, 60)),
    max_size=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# found by CI: a copy frozen before its first byte goes late in the hedge; another copy of
# its piece is then made while it is not measured (as ``Selector._lead`` means it to be)
@example(
    size=43690,
    rates=[438507, 329680, 2048, 33055, 2048, 2048, 2048, 2048, 2048],
    slots=1,
    refresh=0.0,
    faults=[(0, "freeze", 3)],
)
@given(
    size=st.integers(1, 2 * MiB),
    rates=st.lists(st.integers(2 * KiB, 2 * MiB), min_size=1, max_size=12),
    slots=st.integers(1, 3),
    refresh=st.sampled_from([0.0, 0.05, 0.3]),
    faults=faults,
)
def test_views_kept_for_a_while_keep_the_rules_and_lose_no_byte(
    size: int, rates: list[int], slots: int, refresh: float, faults: list[tuple[int, str, int]]
) -> None:
    sim = _swarm(size, dataclasses.replace(CONFIG, refresh=refresh))
    for i, rate in enumerate(rates):
        sim.add(f"s{i}", rate=rate, slots=slots)
    events = sorted(faults, key=lambda f: f[2])
    for step in range(1, 61):  # 3 simulated seconds in steps of 0.05
        for who, what, _ in [f for f in events if f[2] == step]:
            name = f"s{who % len(rates)}"
            if what == "kill":
                sim.kill(name)
            else:
                sim.sources[name].frozen = what == "freeze"
        sim.step(0.05)
        sim.scheduler.check_invariants()
        assert sim.written == sim.scheduler.done()
    for src in sim.sources.values():
        src.frozen = False
    sim.add("rescuer", rate=256 * KiB, slots=2)
    assert sim.run(dt=0.05, max_time=sim.now + 600)
    assert sim.written == RangeSet([ByteRange(0, size)])
    sim.scheduler.check_invariants()


def _hangs_while_idle(config: SchedulerConfig) -> tuple[SimSwarm, float]:
    """a and b stream 1 MiB pieces at 1 MiB/s (first bytes within a step) until b is idle;
    then b hangs, and gets the next piece: returns the swarm and when b got it."""
    sim = _swarm(8 * MiB, config)
    sim.add("a", rate=MiB, slots=1)
    sim.add("b", rate=MiB, slots=1)
    for _ in range(22):  # a little over a piece each
        sim.step(0.05)
    b = sim.sources["b"]
    b.frozen = True
    (lease,) = [x for x in sim.scheduler.statistics(sim.now).leases if x.source_id == "b"]
    sim.scheduler.on_failure(lease.lease_id, sim.now, reason="reset")  # b: no lease now
    sim.streams.pop(lease.lease_id, None)
    b_since = sim.now + config.backoff_initial
    for _ in range(10):  # b is given work again once its backoff ends
        sim.step(0.05)
    return sim, b_since


PIECES = dataclasses.replace(
    CONFIG, min_piece=MiB, max_piece=MiB, pieces_per_slot=1, steal=False, rescue_backlog=0,
    silence=2.0, silence_gaps=10.0, silence_floor=0.25, backoff_initial=0.1, stall_timeout=15.0,
)  # fmt: skip


def test_a_helper_that_hung_while_idle_is_noticed_by_its_usual_wait_for_a_first_byte() -> None:
    sim, _ = _hangs_while_idle(PIECES)
    sched = sim.scheduler
    b = sched._sources["b"]
    assert b.first_wait is not None
    assert b.first_wait < 0.06  # its first bytes came within a step
    expected = max(PIECES.silence_floor, PIECES.silence_first * b.first_wait)
    assert expected < PIECES.silence / 2
    assert b.silence(PIECES, started=False) == pytest.approx(expected)
    (mine,) = [x for x in sched.statistics(sim.now).leases if x.source_id == "b"]
    lease = sched._pieces.lease(mine.lease_id)
    assert lease.deliveries == 0  # it hangs
    assert not sched._selector._silent(lease, mine.started + expected - 0.01)
    assert sched._selector._silent(lease, mine.started + expected)  # not config.silence


def test_a_source_never_measured_gets_all_of_silence_for_its_first_byte() -> None:
    sched = Scheduler(4 * MiB, PIECES)
    sched.add_source("a", 1, 0.0)
    (lease,) = [x for x in sched.poll(0.0) if isinstance(x, Assign)]
    src = sched._sources["a"]
    assert src.first_wait is None
    assert not sched._selector._silent(sched._pieces.lease(lease.lease_id), 1.9)
    assert sched._selector._silent(sched._pieces.lease(lease.lease_id), 2.0)


def test_a_drifted_missing_total_or_time_order_is_caught() -> None:
    sim = _swarm(1 * MiB, CONFIG)
    sim.add("a", rate=256 * KiB, slots=2)
    sim.add("b", rate=64 * KiB, slots=1)
    for _ in range(4):
        sim.step(0.05)
    ledger = sim.scheduler._pieces
    sim.scheduler.check_invariants()
    ledger._missing_total += 1
    with pytest.raises(AssertionError):
        sim.scheduler.check_invariants()
    ledger._missing_total -= 1
    first = next(iter(ledger._by_data))
    ledger._by_data.move_to_end(first)  # the oldest now looks the freshest
    if len({x.last_data for x in ledger.leases()}) > 1:
        with pytest.raises(AssertionError):
            sim.scheduler.check_invariants()


def test_stalled_leases_are_revoked_oldest_first_and_told_by_id() -> None:
    sched = Scheduler(4 * MiB, dataclasses.replace(PIECES, stall_timeout=1.0))
    for name in ("a", "b", "c"):
        sched.add_source(name, 1, 0.0)
    leases = [x for x in sched.poll(0.0) if isinstance(x, Assign)]
    sched.on_data(leases[0].lease_id, KiB, 0.5)  # a: fresher than b and c
    assert sched.next_deadline(0.6) == pytest.approx(1.0)  # b's and c's stall
    cancels = sched.on_timer(1.0)
    assert [x.lease_id for x in cancels if hasattr(x, "lease_id")] == sorted(
        x.lease_id for x in leases[1:]
    )
    assert [x.lease_id for x in sched.statistics(1.0).leases] == [leases[0].lease_id]


def _copy_on_a_slow_helper() -> tuple[Selector, PieceMap, SourceBook, Lease]:
    """h holds a 1 MiB piece and hangs at 0.5 s; s (about 20 KiB/s) streams a copy of it."""
    config = dataclasses.replace(PIECES, endgame_min_eta=0.25)
    book, ledger = SourceBook(config), PieceMap(MiB)
    for name in ("h", "s", "f", "z"):
        book.add(name, 1, 0.0)
    held = ledger.lease_missing(MiB, piece_id=1, lease_id=2, source_id="h", now=0.0)
    copy = ledger.add_lease(ledger.piece(1), lease_id=3, source_id="s", now=0.0, duplicate=True)
    t = 0.0
    for _ in range(30):
        t = round(t + 0.05, 2)
        if t <= 0.5:
            ledger.deliver(held, 32 * KiB, t)
        ledger.deliver(copy, KiB, t)
        book.record(book["f"], t, 64 * KiB, 0.0)  # f: 1.25 MiB/s elsewhere
        book.record(book["z"], t, 512, 0.0)  # z: slower than the copy
    book["h"].gap = book["s"].gap = 0.05
    return Selector(config, ledger, book), ledger, book, copy


def test_a_copy_on_a_slow_helper_gets_a_faster_one_but_never_a_slower_one() -> None:
    sel, ledger, book, copy = _copy_on_a_slow_helper()
    now = 1.5  # h silent since 1.0; the copy streams at ~20 KiB/s
    piece = ledger.piece(1)
    assert sel._lead(piece, now) is copy
    assert sel._duplicate(book["f"], now) == Duplicate(piece)
    assert sel._duplicate(book["z"], now) is None


def test_a_piece_whose_copy_is_not_measured_yet_gets_no_further_copy() -> None:
    sel, ledger, book, _ = _copy_on_a_slow_helper()
    piece = ledger.piece(1)
    ledger.add_lease(piece, lease_id=4, source_id="f", now=1.5, duplicate=True)
    assert sel._lead(piece, 1.5) is None
    assert sel._duplicate(book["z"], 1.5) is None


PROBES = dataclasses.replace(
    PIECES, min_piece=64 * KiB, max_piece=64 * KiB, stall_timeout=1.0, endgame=False,
    backoff_initial=0.1,
)  # fmt: skip


def _stalls(sched: Scheduler, lease_id: int) -> None:
    """``lease_id`` delivers nothing: at 1.0 its lease is revoked, its source suspect."""
    cancels = sched.on_timer(1.0)
    assert [x.lease_id for x in cancels if hasattr(x, "lease_id")] == [lease_id]


def test_a_suspect_source_gets_no_probe_of_the_last_missing_bytes() -> None:
    sched = Scheduler(256 * KiB, PROBES)
    sched.add_source("a", 1, 0.0)
    sched.add_source("b", 1, 0.0)
    first = {x.source_id: x for x in sched.poll(0.0) if isinstance(x, Assign)}
    claim = sched.on_data(first["a"].lease_id, 64 * KiB, 0.5)
    assert claim.finished
    sched.poll(0.5)  # a takes the next piece
    sched.on_data(next(iter(sched._sources["a"].leases)), KiB, 0.9)
    _stalls(sched, first["b"].lease_id)
    assert sched._sources["b"].suspect
    assert sched.statistics(1.5).missing == 128 * KiB  # b's piece and the last one
    assert [x for x in sched.poll(1.5) if isinstance(x, Assign)] == []  # a is busy: wait


def test_when_every_source_is_suspect_one_still_gets_a_probe() -> None:
    sched = Scheduler(256 * KiB, PROBES)
    sched.add_source("b", 1, 0.0)
    (lease,) = [x for x in sched.poll(0.0) if isinstance(x, Assign)]
    _stalls(sched, lease.lease_id)
    assert sched._sources["b"].suspect
    (probe,) = [x for x in sched.poll(1.5) if isinstance(x, Assign)]
    assert probe.source_id == "b"
    assert probe.range.length == PROBES.min_piece


def test_a_source_that_asked_in_vain_is_woken_after_refresh_not_at_the_stall() -> None:
    sched = Scheduler(1 * MiB, PIECES)
    sched.add_source("a", 1, 0.0)
    sched.add_source("b", 1, 0.0)
    (only,) = [x for x in sched.poll(0.0) if isinstance(x, Assign)]  # one piece: b gets none
    assert sched.next_deadline(0.0) == pytest.approx(PIECES.refresh)
    sched.on_data(only.lease_id, MiB, 0.01)  # done: nobody waits for anything
    assert sched.is_complete()
    sched.poll(0.06)
    assert sched.next_deadline(0.06) is None
