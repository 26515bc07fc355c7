"""core/resume.py: the one decision about what an earlier run left (each verdict)."""

from __future__ import annotations

from pathlib import PurePath

import pytest

from swarmget.core.errors import DestinationExists, OriginChanged
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.resume import (
    CHANGED_REASON,
    Recorded,
    Refuse,
    Resume,
    ResumeKey,
    ResumeState,
    StartFresh,
    Unrecorded,
    decide_resume,
)

DEST = PurePath("/downloads/f.iso")


def key(size: int | None = 100, *, etag: str | None = '"v1"', url: str = "http://o/f") -> ResumeKey:
    return ResumeKey(url=url, final_url=url, size=size, validator_etag=etag)


def ranges(*pairs: tuple[int, int]) -> RangeSet:
    return RangeSet([ByteRange(a, b) for a, b in pairs])


@pytest.mark.parametrize("restart", [True, False])
def test_nothing_recorded_starts_new(restart: bool) -> None:
    verdict = decide_resume(
        key(), Unrecorded.MISSING, data_size=0, dest=DEST, restart_if_changed=restart
    )
    assert verdict == StartFresh(ResumeState.NEW)


@pytest.mark.parametrize("restart", [True, False])
def test_unreadable_control_file_starts_over(restart: bool) -> None:
    verdict = decide_resume(
        key(), Unrecorded.UNREADABLE, data_size=100, dest=DEST, restart_if_changed=restart
    )
    assert verdict == StartFresh(ResumeState.RESTARTED_UNUSABLE)


def test_same_key_and_intact_data_resumes() -> None:
    stored = Recorded(key(), ranges((0, 40), (60, 70)))
    verdict = decide_resume(key(), stored, data_size=100, dest=DEST, restart_if_changed=False)
    assert verdict == Resume(ranges((0, 40), (60, 70)))
    assert verdict.state is ResumeState.RESUMED


def test_a_changed_final_url_still_resumes() -> None:
    moved = ResumeKey(
        url="http://o/f", final_url="http://mirror/f", size=100, validator_etag='"v1"'
    )
    verdict = decide_resume(moved, Recorded(key(), ranges((0, 1))), data_size=100, dest=DEST)
    assert isinstance(verdict, Resume)


def test_same_key_with_nothing_written_is_new() -> None:
    verdict = decide_resume(key(), Recorded(key(), RangeSet()), data_size=100, dest=DEST)
    assert verdict == StartFresh(ResumeState.NEW)


@pytest.mark.parametrize(
    ("data_size", "written"),
    [(99, ranges((0, 10))), (0, ranges((0, 10))), (100, ranges((0, 10), (90, 101)))],
    ids=["short-data-file", "data-file-missing", "ranges-past-the-end"],
)
def test_data_file_that_does_not_match_starts_over(data_size: int, written: RangeSet) -> None:
    verdict = decide_resume(key(), Recorded(key(), written), data_size=data_size, dest=DEST)
    assert verdict == StartFresh(ResumeState.RESTARTED_UNUSABLE)


@pytest.mark.parametrize("changed", [key(etag='"v2"'), key(101), key(etag=None)])
def test_same_url_changed_refuses_without_restart_if_changed(changed: ResumeKey) -> None:
    stored = Recorded(key(), ranges((0, 50)))
    verdict = decide_resume(changed, stored, data_size=100, dest=DEST, restart_if_changed=False)
    assert isinstance(verdict, Refuse)
    assert isinstance(verdict.error, OriginChanged)
    assert "/downloads/f.iso.part" in str(verdict.error)  # where the kept data is


@pytest.mark.parametrize("changed", [key(etag='"v2"'), key(101)])
def test_same_url_changed_restarts_with_a_reason_when_asked(changed: ResumeKey) -> None:
    stored = Recorded(key(), ranges((0, 50)))
    verdict = decide_resume(changed, stored, data_size=100, dest=DEST, restart_if_changed=True)
    assert verdict == StartFresh(ResumeState.RESTARTED_CHANGED, reason=CHANGED_REASON)


@pytest.mark.parametrize("restart", [True, False])
def test_another_urls_partial_data_is_kept_unless_forced(restart: bool) -> None:
    """Issue #16: a different URL to the same -o silently discarded the old partial file."""
    stored = Recorded(key(url="http://o/other"), ranges((0, 50)))
    verdict = decide_resume(key(), stored, data_size=100, dest=DEST, restart_if_changed=restart)
    assert isinstance(verdict, Refuse)
    assert isinstance(verdict.error, DestinationExists)
    assert "http://o/other" in str(verdict.error)
    assert "--force" in str(verdict.error)
    verdict = decide_resume(
        key(), stored, data_size=100, dest=DEST, restart_if_changed=restart, force=True
    )
    assert verdict == StartFresh(ResumeState.RESTARTED_CHANGED)
    nothing_kept = Recorded(key(url="http://o/other"), RangeSet())
    verdict = decide_resume(key(), nothing_kept, data_size=100, dest=DEST)
    assert verdict == StartFresh(ResumeState.RESTARTED_CHANGED)  # nothing to lose


@pytest.mark.parametrize("restart", [True, False])
def test_unknown_size_never_resumes_nor_refuses(restart: bool) -> None:
    stored = Recorded(key(None), ranges((0, 50)))
    verdict = decide_resume(key(None), stored, data_size=50, dest=DEST, restart_if_changed=restart)
    assert verdict == StartFresh(ResumeState.RESTARTED_CHANGED)


def test_resume_key_round_trips_through_json() -> None:
    k = ResumeKey(
        url="http://o/f",
        final_url="http://m/f",
        size=7,
        validator_etag='"e"',
        validator_last_modified="Tue, 01 Dec 2026 00:00:00 GMT",
    )
    assert ResumeKey.from_json(k.to_json()) == k


def test_malformed_resume_key_is_rejected() -> None:
    bad = {"url": 1, "final_url": "x", "size": 1, "etag": None, "last_modified": None}
    with pytest.raises(ValueError, match="malformed"):
        ResumeKey.from_json(bad)
