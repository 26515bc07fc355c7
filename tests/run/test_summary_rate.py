"""The summary's rate counts only the bytes fetched by this run (issue #16: a resumed
download's rate counted what an earlier run had left on disk)."""

from __future__ import annotations

from pathlib import Path

from swarmget.cli.get import result_json, summary_line
from swarmget.core.verification import Verification, VerificationReport
from swarmget.engine import DownloadResult
from swarmget.engine.sharing import SharingReport

MiB = 1024 * 1024


def test_resumed_bytes_are_not_part_of_the_rate() -> None:
    result = DownloadResult(
        path=Path("/d/f.iso"), size=100 * MiB, elapsed=10.0, mode="segmented",
        resumed_bytes=90 * MiB, fetched_bytes=10 * MiB, digests={}, verified=(),
        sources=(), last_byte_to_done=0.0,
    )  # fmt: skip
    assert result_json(result)["rate"] == 1 * MiB
    assert "1.0 MiB/s" in summary_line(result)


def test_lan_holders_bytes_are_not_called_helpers_bytes() -> None:
    """Fetch once per LAN: bytes from LAN holders are named as such in the summary."""

    def summary(helper: int, lan: int, methods: tuple[Verification, ...]) -> str:
        report = VerificationReport(methods=methods, helper_bytes=helper + lan, helper_streams=2)
        result = DownloadResult(
            path=Path("/d/f.iso"), size=8 * MiB, elapsed=1.0, mode="segmented",
            resumed_bytes=0, fetched_bytes=8 * MiB, digests={}, verified=(), sources=(),
            last_byte_to_done=0.0, verification=report,
            sharing=SharingReport(joined=True, holders_used=bool(lan), lan_bytes=lan),
        )  # fmt: skip
        return summary_line(result)

    assert "from LAN holders" in summary(0, 4 * MiB, ())
    assert "helper" not in summary(0, 4 * MiB, ())
    assert "from helpers and LAN holders" in summary(2 * MiB, 4 * MiB, ())
    assert "LAN holder streams sampled" in summary(0, 4 * MiB, (Verification.SAMPLED,))
    assert "from helpers" in summary(4 * MiB, 0, ())
