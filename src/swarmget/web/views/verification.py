"""The details page's verification panel: what was checked, and how."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarmget.core import verification as checks
from swarmget.core.lifecycle import DownloadState, parse_state
from swarmget.core.verification import VerificationReport
from swarmget.web.humanize import human_bytes


@dataclass(frozen=True, kw_only=True)
class Verification:
    status: str  # ok, failed, pending, cancelled
    title: str
    lines: tuple[str, ...] = ()


def verification(d: Mapping[str, Any]) -> Verification:
    state = parse_state(d["state"])
    result: Mapping[str, Any] | None = d.get("result")
    error: Mapping[str, Any] | None = d.get("error")
    if state is DownloadState.DONE and result is not None:
        verified = list(result.get("verified") or [])
        digests: Mapping[str, str] = result.get("digests") or {}
        report = _report(result)
        sampled = () if report is None else _sampling_lines(report)
        if not verified:
            return _unverified(report, sampled)
        lines = tuple(f"{alg} {digests.get(alg, '')}" for alg in verified) + sampled
        return Verification(status="ok", title=f"Verified: {', '.join(verified)} ✓", lines=lines)
    if state is DownloadState.FAILED and error is not None:
        if error["code"] == "checksum_mismatch":  # (its report is in the error's details)
            return Verification(status="failed", title="Verification failed: see the error")
        return Verification(status="cancelled", title="Not verified: the download failed")
    if state is DownloadState.CANCELLED:
        return Verification(status="cancelled", title="Cancelled: the partial data is kept")
    if state is DownloadState.PAUSED:
        return Verification(status="cancelled", title="Paused: the partial data is kept")
    if (d.get("progress") or {}).get("stage") == "verifying":
        return Verification(status="pending", title="Verifying…")
    return Verification(
        status="pending", title="Not verified yet: checked when the last byte lands"
    )


def _report(result: Mapping[str, Any]) -> VerificationReport | None:
    try:
        return VerificationReport.from_json(result.get("verification"))
    except (TypeError, ValueError, KeyError):
        return None  # an older node's answer, or a malformed one: say nothing about it


def _sampling_lines(report: VerificationReport) -> tuple[str, ...]:
    if report.level is checks.Verification.NONE and not report.helper_bytes:
        return ()
    return (
        f"helpers delivered {human_bytes(report.helper_bytes)} in {report.helper_streams} "
        f"streams; {report.sampled_streams} compared with the origin "
        f"({human_bytes(report.sampled_bytes)} re-fetched)",
    )


def _unverified(report: VerificationReport | None, lines: tuple[str, ...]) -> Verification:
    if report is not None and checks.Verification.SAMPLED in report.methods:
        title = "Spot-checked: every helper stream sampled against the origin (no checksum)"
        return Verification(status="ok", title=title, lines=lines)
    if report is not None and report.helper_bytes:
        title = "NOT verified: helpers' bytes were not checked (no checksum, sampling off)"
        return Verification(status="failed", title=title, lines=lines)
    return Verification(
        status="ok", title="Complete: size checked (no checksum given or published)"
    )
