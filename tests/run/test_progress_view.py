"""The live progress view (issue #16: the table's header shared a line with the bar, its
columns cut and misaligned)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from swarmget.core.ranges import ByteRange
from swarmget.core.scheduling import SourceInfo, SourceState
from swarmget.engine import DownloadProgress, Stage
from swarmget.progress import render


def source(name: str, state: SourceState) -> SourceInfo:
    return SourceInfo(
        source_id=name, state=state, slots=4, active_leases=1, received=300, claimed=250,
        rate=12.5, failures=0, segments=(ByteRange(0, 250),), ban_reason=None,
    )  # fmt: skip


PROGRESS = DownloadProgress(
    stage=Stage.DOWNLOADING, url="http://example.org/f.iso", dest=Path("/d/f.iso"), size=1000,
    done=300, rate=100.0, elapsed=3.0, mode="segmented", resumed_bytes=0,
    sources=(source("me", SourceState.ACTIVE), source("h1", SourceState.BANNED)),
)  # fmt: skip


def test_the_bar_and_the_table_header_are_separate_lines() -> None:
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(render(PROGRESS))
    lines = out.getvalue().splitlines()
    header = next(i for i, line in enumerate(lines) if "source" in line)
    assert lines[header].split() == ["source", "state", "streams", "bytes", "rate", "failures"]
    assert "━" in lines[header - 1]  # the bar, on its own line above
    assert "━" not in lines[header]
    rows = [line for line in lines[header + 1 :] if line.strip()]
    assert [r.split()[0] for r in rows] == ["me", "h1"]
    # every column starts where its header does
    assert rows[0].index("active") == lines[header].index("state")
