"""A download's JSON is written and read by one module: what it writes, it reads back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from swarmget.core import events as ev
from swarmget.core.byte_sources import BytesBySource, SourceKind
from swarmget.core.errors import OriginUnusable
from swarmget.core.lifecycle import DownloadState
from swarmget.core.ranges import ByteRange
from swarmget.core.scheduler import SourceInfo, SourceState
from swarmget.core.verification import Verification, VerificationReport
from swarmget.engine import DownloadProgress, DownloadResult, Stage, Timeline
from swarmget.node import download_json as dj
from swarmget.node.hub_report import HubOutcome, HubReport

URL = "http://example.org/f.iso?token=secret"
SOURCES = (
    SourceInfo(
        source_id="me",
        state=SourceState.ACTIVE,
        slots=4,
        active_leases=1,
        received=300,
        claimed=250,
        rate=12.5,
        failures=0,
        segments=(ByteRange(0, 250),),
        ban_reason=None,
        cut=3,
        ranges=9,
        waited=0.25,
        ahead=4,
    ),
    SourceInfo(
        source_id="h1",
        state=SourceState.BANNED,
        slots=2,
        active_leases=0,
        received=50,
        claimed=50,
        rate=0.0,
        failures=3,
        segments=(ByteRange(250, 300),),
        ban_reason="sent bad data",
    ),
)
PROGRESS = DownloadProgress(
    stage=Stage.DOWNLOADING,
    url=URL,
    dest=Path("/d/f.iso"),
    size=1000,
    done=300,
    rate=100.0,
    elapsed=3.0,
    mode="segmented",
    resumed_bytes=0,
    sources=SOURCES,
    by_source=BytesBySource(origin=200, helper=60, lan=40, check=4),
    kinds={SOURCES[0].source_id: SourceKind.ORIGIN, SOURCES[-1].source_id: SourceKind.LAN},
)
RESULT = DownloadResult(
    path=Path("/d/f.iso"),
    size=1000,
    elapsed=4.0,
    mode="segmented",
    resumed_bytes=0,
    fetched_bytes=1050,
    digests={"sha256": "ab" * 32},
    verified=("sha256",),
    sources=SOURCES,
    last_byte_to_done=0.25,
    verification=VerificationReport(methods=(Verification.CHECKSUM,), helper_bytes=50),
)


def sent(data: object) -> dict[str, object]:
    return dict(json.loads(json.dumps(data)))


def test_progress_round_trip() -> None:
    assert dj.progress_from_json(URL, sent(dj.progress_json(PROGRESS))) == PROGRESS


def test_result_round_trip() -> None:
    data = sent(
        dj.download_json(
            download_id="abc",
            url=URL,
            state=DownloadState.DONE,
            created=1.0,
            peers=["h1"],
            error=None,
            progress=PROGRESS,
            events=[ev.FellBack(at=0.5)],
            result=RESULT,
        )
    )
    assert dj.result_from_json(data) == RESULT
    assert "secret" not in str(data["url"])  # redacted once, here
    assert data["state"] == "done"
    assert data["events"] == [ev.to_json(ev.FellBack(at=0.5))]


def test_a_starting_download_has_no_progress_events_or_result() -> None:
    data = dj.download_json(
        download_id="abc",
        url=URL,
        state=DownloadState.FAILED,
        created=1.0,
        peers=[],
        error=OriginUnusable("the origin answered 404"),
        progress=None,
        events=None,
        result=None,
    )
    assert set(data) == {"id", "url", "state", "created", "peers", "error", "hub"}
    assert data["hub"] is None  # no hub asked (yet)
    assert data["error"] == {"code": "origin_unusable", "message": "the origin answered 404"}


def test_a_record_moves_only_as_the_lifecycle_table_allows() -> None:
    from swarmget.core.lifecycle import IllegalTransition
    from swarmget.engine import DownloadSpec
    from swarmget.node.download_record import DownloadRecord

    record = DownloadRecord(id="abc", spec=DownloadSpec(url=URL), created=0.0)
    assert record.state is DownloadState.STARTING
    record.move(DownloadState.RUNNING)
    record.move(DownloadState.DONE)
    for target in DownloadState:
        with pytest.raises(IllegalTransition):
            record.move(target)
    assert record.state is DownloadState.DONE


TIMELINE = Timeline(
    hub=0.05,
    hub_peers=3,
    probe=0.04,
    joined={"h1": 0.1},
    first_byte={"me": 0.06, "h1": 0.12},
    last_data={"me": 3.7, "h1": 3.41},
    last_byte=3.7,
    verified=3.95,
)


def sent_with_timeline() -> dict[str, object]:
    """A finished download's JSON, with ``TIMELINE``, as a node sends it."""
    result = dataclasses.replace(RESULT, timeline=TIMELINE)
    return sent(
        dj.download_json(
            download_id="d1",
            url=URL,
            state=DownloadState.DONE,
            created=1.0,
            peers=["h1"],
            error=None,
            progress=PROGRESS,
            events=None,
            result=result,
        )
    )


def test_the_timeline_goes_with_the_result_and_back() -> None:
    data = sent_with_timeline()
    assert data["result"]["timeline"]["first_byte"] == {"me": 0.06, "h1": 0.12}  # type: ignore[index]
    assert data["result"]["timeline"]["last_data"] == {"me": 3.7, "h1": 3.41}  # type: ignore[index]
    assert dj.result_from_json(data).timeline == TIMELINE


def test_an_older_nodes_timeline_without_last_data_reads_back_empty() -> None:
    data = sent_with_timeline()
    del data["result"]["timeline"]["last_data"]  # type: ignore[index]
    assert dj.result_from_json(data).timeline == dataclasses.replace(TIMELINE, last_data={})


def test_what_the_hub_said_goes_with_the_download_and_back() -> None:
    report = HubReport(
        outcome=HubOutcome.UNAVAILABLE, hub_url="http://127.0.0.1:9", error="refused"
    )
    data = sent(
        dj.download_json(
            download_id="d1",
            url=URL,
            state=DownloadState.DONE,
            created=1.0,
            peers=[],
            error=None,
            progress=None,
            events=None,
            result=None,
            hub=report,
        )
    )
    assert data["hub"] == {
        "status": "unavailable",
        "hub_url": "http://127.0.0.1:9",
        "peers": 0,
        "alone": True,
        "error": "refused",
    }
    assert dj.hub_from_json(data) == report
    assert report.warning() == "hub http://127.0.0.1:9 unreachable: downloaded without helpers"
    answered = HubReport(outcome=HubOutcome.ANSWERED, hub_url="http://h", peers=2)
    assert answered.warning() is None
    assert dj.hub_from_json({"hub": None}) is None


def test_an_older_nodes_result_has_an_empty_timeline() -> None:
    data = sent(
        dj.download_json(
            download_id="d1",
            url=URL,
            state=DownloadState.DONE,
            created=1.0,
            peers=[],
            error=None,
            progress=PROGRESS,
            events=None,
            result=RESULT,
        )
    )
    del data["result"]["timeline"]  # type: ignore[attr-defined]
    assert dj.result_from_json(data).timeline == Timeline()


@pytest.mark.parametrize(
    "bad",
    [{"status": "maybe", "hub_url": "http://h"}, {"hub_url": "http://h"}],
)
def test_a_malformed_hub_answer_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises((KeyError, ValueError)):
        dj.hub_from_json({"hub": bad})


@pytest.mark.parametrize("last_data", [["h1"], {"h1": "soon"}, {"h1": None}, "x"])
def test_a_malformed_last_data_is_an_error_the_cli_reports_as_malformed(last_data: object) -> None:
    """A node's answer is read back with errors of these types only, which `swarmget get`
    turns into "the node's answer is malformed" (``run.get``), never a crash."""
    data = sent_with_timeline()
    data["result"]["timeline"]["last_data"] = last_data  # type: ignore[index]
    with pytest.raises((KeyError, TypeError, ValueError, AttributeError)):
        dj.result_from_json(data)
