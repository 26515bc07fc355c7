"""The verification report: a typed fact, ordered strongest first, round-tripping as JSON."""

from __future__ import annotations

import pytest

from swarmget.core.verification import Verification, VerificationReport


def test_nothing_checked_is_level_none() -> None:
    report = VerificationReport(helper_bytes=10, helper_streams=1)
    assert report.level is Verification.NONE
    assert not report.whole_file
    assert report.to_json()["methods"] == []


def test_methods_are_ordered_strongest_first() -> None:
    report = VerificationReport(methods=(Verification.SAMPLED, Verification.CHECKSUM))
    assert report.methods == (Verification.CHECKSUM, Verification.SAMPLED)
    assert report.level is Verification.CHECKSUM
    assert report.whole_file


def test_sampled_alone_is_not_a_whole_file_check() -> None:
    report = VerificationReport(methods=(Verification.SAMPLED,), sampled_streams=3)
    assert report.level is Verification.SAMPLED
    assert not report.whole_file


def test_json_round_trip() -> None:
    report = VerificationReport(
        methods=(Verification.REPR_DIGEST, Verification.SAMPLED),
        helper_bytes=5,
        helper_streams=2,
        sampled_streams=2,
        sampled_bytes=3,
        sample_fraction=0.01,
    )
    assert VerificationReport.from_json(report.to_json()) == report


@pytest.mark.parametrize(
    "data",
    [None, [], {"methods": ["bogus"]}, {"methods": []}, {"methods": ["none"], "helper_bytes": 1}],
)
def test_malformed_json_is_an_error(data: object) -> None:
    with pytest.raises((TypeError, ValueError, KeyError)):
        VerificationReport.from_json(data)


def test_none_and_repeats_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        VerificationReport(methods=(Verification.NONE,))
    with pytest.raises(ValueError, match="distinct"):
        VerificationReport(methods=(Verification.SAMPLED, Verification.SAMPLED))
