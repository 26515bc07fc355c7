"""How many sample checks run at once: few while the download runs (they share the
requester's origin link with its own streams), more once every byte is in (then each one
left is a round trip between the last byte and the verified file)."""

from __future__ import annotations

from swarmget.core.ranges import ByteRange
from swarmget.engine import DownloadSpec
from swarmget.engine.checks import CHECKS_AT_END, CHECKS_AT_ONCE, IntegrityChecks


def queued(count: int) -> IntegrityChecks:
    checks = IntegrityChecks(DownloadSpec(url="http://example.test/f", verify_sample=0.01))
    for i in range(count):
        assert checks.stream_ended(f"helper{i % 3}", [ByteRange(i * 1000, i * 1000 + 1000)])
    return checks


def test_few_checks_at_once_while_the_download_runs() -> None:
    checks = queued(20)
    assert len(checks.to_start()) == CHECKS_AT_ONCE
    assert checks.to_start() == []  # the first ones are still out
    assert checks.running == CHECKS_AT_ONCE


def test_more_at_once_when_only_checks_are_left() -> None:
    assert CHECKS_AT_END > CHECKS_AT_ONCE
    checks = queued(20)
    checks.to_start()
    more = checks.to_start(at_end=True)
    assert len(more) == CHECKS_AT_END - CHECKS_AT_ONCE
    assert checks.running == CHECKS_AT_END
    checks.running -= 3  # three came back
    assert len(checks.to_start(at_end=True)) == 3


def test_no_more_than_are_queued() -> None:
    checks = queued(5)
    assert len(checks.to_start(at_end=True)) == 5
    assert checks.idle() is False
