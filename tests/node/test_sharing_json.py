"""The fetch-once report (#15) goes with a download's JSON result and back; a result
without sharing has no ``sharing`` key (what older readers see is unchanged)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from swarmget.core.lifecycle import DownloadState
from swarmget.core.verification import Verification
from swarmget.engine import DownloadProgress, DownloadResult, Stage
from swarmget.engine.sharing import SharingNote, SharingReport
from swarmget.node import download_json as dj

RESULT = DownloadResult(
    path=Path("/tmp/f.bin"),
    size=100,
    elapsed=1.0,
    mode="segmented",
    resumed_bytes=0,
    fetched_bytes=100,
    digests={},
    verified=(),
    sources=(),
    last_byte_to_done=0.1,
)
PROGRESS = DownloadProgress(
    stage=Stage.DONE,
    url="http://o.test/f.bin",
    dest=Path("/tmp/f.bin"),
    size=100,
    done=100,
    rate=0.0,
    elapsed=1.0,
    mode="segmented",
    resumed_bytes=0,
    sources=(),
)
SHARING = SharingReport(
    joined=True,
    holders_used=True,
    origin_bytes=3,
    lan_bytes=97,
    holder_check=Verification.SAMPLED,
    banned_holders=("n1",),
    notes=(SharingNote.INDEX_SILENT,),
    origin_cuts=2,
)


def _sent(result: DownloadResult) -> dict[str, Any]:
    data = dj.download_json(
        download_id="d1",
        url="http://o.test/f.bin",
        state=DownloadState.DONE,
        created=1.0,
        peers=[],
        error=None,
        progress=PROGRESS,
        events=None,
        result=result,
    )
    out: dict[str, Any] = json.loads(json.dumps(data))
    return out


def test_the_sharing_report_goes_with_the_result_and_back() -> None:
    data = _sent(dataclasses.replace(RESULT, sharing=SHARING))
    assert data["result"]["sharing"]["lan_bytes"] == 97
    assert data["result"]["sharing"]["holder_check"] == "sampled"
    assert dj.result_from_json(data).sharing == SHARING


def test_a_result_without_sharing_has_no_sharing_key() -> None:
    data = _sent(RESULT)
    assert "sharing" not in data["result"]
    assert dj.result_from_json(data).sharing is None
