"""The details page's verification panel: what was checked, and how.

The report's ``helper_bytes`` are every byte others delivered: helpers' (over their origin
links) and LAN holders' (from their disks, fetch once per LAN). The panel names each as the
sources table does, the holders' share being what the table's ``LAN holder`` rows claimed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarmget.core import verification as checks
from swarmget.core.byte_sources import SourceKind
from swarmget.core.lifecycle import DownloadState, parse_state
from swarmget.core.verification import VerificationReport
from swarmget.web.humanize import human_bytes
from swarmget.web.views.sharing import sharing_view


@dataclass(frozen=True, kw_only=True)
class Verification:
    status: str  # ok, failed, pending, cancelled
    title: str
    lines: tuple[str, ...] = ()
    helper_bytes: int = 0  # of the file's bytes, those helpers delivered (over their links)
    lan_bytes: int = 0  # ... and those LAN holders delivered (from their disks)
    lan_check: str | None = None  # how the holders' bytes were checked (a Verification value)


def verification(d: Mapping[str, Any]) -> Verification:
    state = parse_state(d["state"])
    result: Mapping[str, Any] | None = d.get("result")
    error: Mapping[str, Any] | None = d.get("error")
    if state is DownloadState.DONE and result is not None:
        verified = list(result.get("verified") or [])
        digests: Mapping[str, str] = result.get("digests") or {}
        report = _report(result)
        delivered = _Delivered.of(report, d)
        sampled = () if report is None else _sampling_lines(report, delivered)
        if not verified:
            return _unverified(report, delivered, sampled)
        lines = tuple(f"{alg} {digests.get(alg, '')}" for alg in verified) + sampled
        title = f"Verified: {', '.join(verified)} ✓"
        return Verification(status="ok", title=title, lines=lines, **delivered.facts())
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


@dataclass(frozen=True)
class _Delivered:
    """The report's bytes from others, split as the sources table splits them."""

    helpers: int
    lan: int
    lan_check: str | None = None  # the sharing report's ``holder_check`` (its value)
    lan_check_words: str | None = None

    @classmethod
    def of(cls, report: VerificationReport | None, d: Mapping[str, Any]) -> _Delivered:
        if report is None:
            return cls(0, 0)
        sources = (d.get("progress") or {}).get("sources") or []
        lan = sum(
            int(s.get("claimed") or 0)
            for s in sources
            if isinstance(s, Mapping) and s.get("kind") == SourceKind.LAN.value
        )
        lan = min(lan, report.helper_bytes)
        sharing = sharing_view(d) if lan else None
        if sharing is None:
            return cls(helpers=report.helper_bytes - lan, lan=lan)
        check, words = sharing.holder_check_key, sharing.holder_check
        return cls(report.helper_bytes - lan, lan, lan_check=check, lan_check_words=words)

    @property
    def who(self) -> str:
        """Who delivered them: "helpers", "LAN holders" or both."""
        names = [n for n, b in (("helpers", self.helpers), ("LAN holders", self.lan)) if b]
        return " and ".join(names) or "helpers"

    def facts(self) -> dict[str, Any]:
        return {"helper_bytes": self.helpers, "lan_bytes": self.lan, "lan_check": self.lan_check}

    def amounts(self) -> str:
        holders = "from LAN holders' disks"
        if self.lan_check_words:
            holders += f" ({self.lan_check_words})"
        parts = [(self.helpers, "via helpers"), (self.lan, holders)]
        shown = [f"{human_bytes(b)} {words}" for b, words in parts if b]
        return ", ".join(shown) or human_bytes(0)


def _sampling_lines(report: VerificationReport, delivered: _Delivered) -> tuple[str, ...]:
    if report.level is checks.Verification.NONE and not report.helper_bytes:
        return ()
    return (
        f"{delivered.amounts()} in {report.helper_streams} streams; "
        f"{report.sampled_streams} compared with the origin "
        f"({human_bytes(report.sampled_bytes)} re-fetched)",
    )


def _unverified(
    report: VerificationReport | None, delivered: _Delivered, lines: tuple[str, ...]
) -> Verification:
    if report is not None and checks.Verification.SAMPLED in report.methods:
        title = (
            f"Spot-checked: every stream of the {delivered.who} sampled against the origin "
            "(no checksum)"
        )
        return Verification(status="ok", title=title, lines=lines, **delivered.facts())
    if report is not None and report.helper_bytes:
        title = (
            f"NOT verified: the bytes of the {delivered.who} were not checked "
            "(no checksum, sampling off)"
        )
        return Verification(status="failed", title=title, lines=lines, **delivered.facts())
    return Verification(
        status="ok", title="Complete: size checked (no checksum given or published)"
    )
