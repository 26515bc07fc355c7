"""The one backoff rule, and that both of its users follow it."""

from __future__ import annotations

import pytest

from swarmget.core.backoff import exponential_backoff
from swarmget.core.scheduler import FailureKind, Scheduler, SchedulerConfig
from swarmget.net.membership import membership_backoff


def test_doubles_from_initial_up_to_the_cap() -> None:
    delays = [exponential_backoff(n, initial=0.5, maximum=3.0) for n in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


@pytest.mark.parametrize("failures", [0, -3])
def test_fewer_than_one_failure_counts_as_one(failures: int) -> None:
    assert exponential_backoff(failures, initial=2.0, maximum=30.0) == 2.0


def test_membership_backoff_is_the_rule_scaled_by_its_jitter() -> None:
    for n in range(1, 8):
        rule = exponential_backoff(n, initial=1.0, maximum=10.0)
        assert membership_backoff(n, initial=1.0, maximum=10.0, jitter=1.0) == rule
        assert membership_backoff(n, initial=1.0, maximum=10.0, jitter=0.0) == rule / 2


def test_the_scheduler_backs_a_failing_source_off_by_the_rule() -> None:
    config = SchedulerConfig(backoff_initial=0.25, backoff_max=1.5, max_failures=10)
    s = Scheduler(10_000_000, config)
    s.add_source("a", 1, 0.0)
    now = 0.0
    for n in range(1, 6):
        (assign,) = s.poll(now)
        s.on_failure(assign.lease_id, now, FailureKind.RETRYABLE)
        wait = exponential_backoff(n, initial=0.25, maximum=1.5)
        assert s.next_deadline(now) == now + wait
        assert s.poll(now + wait * 0.99) == []
        now += wait
