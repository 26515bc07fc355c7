"""The summary's rate counts only the bytes fetched by this run (issue #16: a resumed
download's rate counted what an earlier run had left on disk)."""

from __future__ import annotations

from pathlib import Path

from swarmget.cli.get import result_json, summary_line
from swarmget.engine import DownloadResult

MiB = 1024 * 1024


def test_resumed_bytes_are_not_part_of_the_rate() -> None:
    result = DownloadResult(
        path=Path("/d/f.iso"), size=100 * MiB, elapsed=10.0, mode="segmented",
        resumed_bytes=90 * MiB, fetched_bytes=10 * MiB, digests={}, verified=(),
        sources=(), last_byte_to_done=0.0,
    )  # fmt: skip
    assert result_json(result)["rate"] == 1 * MiB
    assert "1.0 MiB/s" in summary_line(result)
