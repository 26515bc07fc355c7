"""``core.ratelimit.TokenBucket``: a clock-free rate, driven here by the test's clock."""

from __future__ import annotations

import pytest

from swarmget.core.ratelimit import TokenBucket


def test_a_full_bucket_sends_its_burst_at_once_then_waits_at_the_rate() -> None:
    bucket = TokenBucket(rate=1000.0, burst=500.0)
    assert bucket.reserve(500, now=0.0) == 0.0
    assert bucket.reserve(250, now=0.0) == pytest.approx(0.25)
    assert bucket.reserve(250, now=0.0) == pytest.approx(0.5)  # queued behind the first


def test_time_refills_up_to_the_burst_only() -> None:
    bucket = TokenBucket(rate=1000.0, burst=500.0)
    bucket.reserve(500, now=0.0)
    assert bucket.reserve(500, now=100.0) == 0.0  # not 100 s of tokens: the burst
    assert bucket.reserve(1, now=100.0) == pytest.approx(0.001)


def test_given_back_tokens_are_not_waited_for() -> None:
    """A sender cancelled while it waited returns what it reserved: the next one does not
    wait for bytes that were never sent."""
    bucket = TokenBucket(rate=1000.0, burst=500.0)
    bucket.reserve(500, now=0.0)
    assert bucket.reserve(300, now=0.0) == pytest.approx(0.3)
    bucket.give_back(300)
    assert bucket.reserve(100, now=0.0) == pytest.approx(0.1)


def test_giving_back_never_overfills() -> None:
    bucket = TokenBucket(rate=1000.0, burst=500.0)
    bucket.give_back(10_000)
    assert bucket.reserve(501, now=0.0) == pytest.approx(0.001)


def test_the_default_burst_is_64_kib_or_a_twentieth_of_a_second() -> None:
    assert TokenBucket(rate=1000.0).burst == 64 * 1024
    assert TokenBucket(rate=20 * 1024 * 1024).burst == 1024 * 1024
