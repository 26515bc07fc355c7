"""What the portal shows, from the user API's JSON: formatting, piece map, sources, timeline."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from swarmget.core import events as ev
from swarmget.core.events import CancelCause
from swarmget.core.ranges import ByteRange
from swarmget.web import humanize, views
from swarmget.web.views import LeaseView

MiB = 1024 * 1024


def source(sid: str, segments: list[list[int]], **fields: Any) -> dict[str, Any]:
    claimed = sum(end - start for start, end in segments)
    return {
        "id": sid,
        "state": "idle",
        "slots": 3,
        "active": 0,
        "received": claimed,
        "claimed": claimed,
        "rate": 0.0,
        "failures": 0,
        "ban_reason": None,
        "segments": segments,
        **fields,
    }


def assign(at: float, src: str, start: int, end: int) -> ev.Event:
    return ev.Assigned(at=at, source_id=src, range=ByteRange(start, end))


def copy(at: float, src: str, start: int, end: int) -> ev.Event:
    return ev.EndgameCopy(at=at, source_id=src, range=ByteRange(start, end))


def failure(at: float, src: str, start: int, end: int, message: str) -> ev.Event:
    r = ByteRange(start, end)
    return ev.StreamFailed(at=at, source_id=src, range=r, code="source_retryable", message=message)


def revoked(at: float, src: str, cause: CancelCause, reason: str) -> ev.Event:
    return ev.Revoked(at=at, source_id=src, cause=cause, reason=reason)


def corrupt(at: float, src: str, start: int, end: int, *, piece: int) -> ev.Event:
    r, check = ByteRange(start, end), ev.BadDataCheck.PIECE_HASH
    return ev.BadData(at=at, source_ids=(src,), range=r, check=check, piece=piece)


def as_json(events: list[ev.Event]) -> list[dict[str, Any]]:
    """The events as the user API serves them (what the portal reads back)."""
    return [ev.to_json(e) for e in events]


def download(state: str = "running", **fields: Any) -> dict[str, Any]:
    return {
        "id": "abc",
        "url": "http://example.org/files/big%20file.iso?x=1",
        "state": state,
        "created": 0.0,
        "peers": ["b", "c"],
        "error": None,
        **fields,
    }


def progress(
    size: int | None, done: int, sources: list[dict[str, Any]], **f: Any
) -> dict[str, Any]:
    return {
        "stage": "downloading",
        "dest": None,
        "size": size,
        "done": done,
        "rate": 2 * MiB,
        "eta": 3.5,
        "elapsed": 1.0,
        "mode": "segmented",
        "resumed_bytes": 0,
        "sources": sources,
        **f,
    }


@pytest.mark.parametrize(
    ("n", "text"),
    [(None, "—"), (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (24 * MiB, "24.0 MiB")],
)
def test_human_bytes(n: int | None, text: str) -> None:
    assert humanize.human_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (2.25, "2.2 s"), (65, "1 min 05 s"), (3725, "1 h 02 min")],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert humanize.human_duration(seconds) == text


def test_ranges_in_event_details_are_made_readable() -> None:
    event = failure(0.1, "a", 0, 4 * MiB, "reset")
    assert ev.describe(event, views.human_range) == "0 B–4.0 MiB: reset"
    assert ev.describe(event) == f"[0, {4 * MiB}): reset"


def test_a_running_row_has_rate_eta_and_a_cancel_action() -> None:
    row = views.download_row(download(progress=progress(8 * MiB, 2 * MiB, [])))
    assert row.name == "big file.iso"  # from the URL until the server names it
    assert (row.percent_text, row.size, row.done) == ("25%", "8.0 MiB", "2.0 MiB")
    assert (row.rate, row.eta) == ("2.0 MiB/s", "3.5 s")
    assert row.can_cancel
    assert not row.can_retry


def test_a_done_row_shows_the_average_rate_and_what_was_verified() -> None:
    result = {"path": "/d/x.iso", "size": 8 * MiB, "elapsed": 2.0, "verified": ["sha256"]}
    row = views.download_row(download("done", progress=progress(8 * MiB, 0, []), result=result))
    assert (row.name, row.percent_text, row.rate, row.eta) == ("x.iso", "100%", "4.0 MiB/s", "—")
    assert row.verified == "sha256"
    assert not row.can_cancel


def test_a_failed_row_carries_its_reason_and_can_be_retried() -> None:
    error = {"code": "origin_unusable", "message": "the origin answered 404"}
    row = views.download_row(download("failed", error=error))
    assert (row.error, row.error_code, row.percent_text) == (error["message"], error["code"], "…")
    assert row.can_retry


def test_bytes_given_back_after_a_failure_and_fetched_again_are_marked() -> None:
    events = [
        assign(0.1, "a", 0, 100),
        assign(0.1, "b", 100, 200),
        failure(0.5, "a", 0, 100, "connection reset"),
        assign(0.6, "b", 40, 100),
    ]
    sources = [source("a", [[0, 40]]), source("b", [[40, 200]])]
    refetched, reassigns = views.refetched_ranges(events, sources)
    assert list(refetched) == [ByteRange(40, 100)]
    assert reassigns == {3}


def test_a_revoked_stream_counts_as_given_back() -> None:
    events = [
        assign(0.1, "a", 0, 100),
        revoked(2.1, "a", CancelCause.STALLED, "stalled: no data for 2.0s"),
        assign(2.1, "b", 0, 100),
    ]
    refetched, _ = views.refetched_ranges(events, [source("a", []), source("b", [[0, 100]])])
    assert list(refetched) == [ByteRange(0, 100)]


def test_steals_and_endgame_copies_are_not_refetches() -> None:
    events = [
        assign(0.1, "a", 0, 100),
        assign(0.2, "b", 50, 100),  # b steals the second half
        copy(0.3, "c", 20, 50),  # endgame: c copies a's rest
        revoked(0.4, "c", CancelCause.LOST_RACE, "another copy finished first"),
    ]
    sources = [source("a", [[0, 50]]), source("b", [[50, 100]]), source("c", [])]
    refetched, reassigns = views.refetched_ranges(events, sources)
    assert not refetched
    assert not reassigns


def test_a_steal_before_a_failure_is_not_marked() -> None:
    events = [
        assign(0.1, "a", 0, 100),
        assign(0.2, "b", 50, 100),
        failure(0.3, "a", 0, 100, "reset"),  # a had written [0, 30)
        assign(0.4, "c", 30, 50),
    ]
    sources = [source("a", [[0, 30]]), source("b", [[50, 100]]), source("c", [[30, 50]])]
    refetched, reassigns = views.refetched_ranges(events, sources)
    assert list(refetched) == [ByteRange(30, 50)]
    assert reassigns == {3}


def test_bytes_that_failed_their_piece_hash_and_came_again_are_marked() -> None:
    events = [
        assign(0.1, "a", 0, 100),
        corrupt(0.5, "a", 0, 50, piece=0),
        ev.Banned(at=0.5, source_id="a", reason="sent bad data: piece 0 [0, 50) failed its sha256"),
        assign(0.6, "b", 0, 50),
    ]
    sources = [source("a", [[50, 100]]), source("b", [[0, 50]])]
    refetched, reassigns = views.refetched_ranges(events, sources)
    assert list(refetched) == [ByteRange(0, 50)]
    assert reassigns == {3}


def test_details_piece_map_sources_and_timeline() -> None:
    size = 400
    sources = [
        source("me", [[0, 100]], state="active", rate=50.0, active=1),
        source("h1", [[100, 150], [200, 250]], state="active", rate=0.0, active=1),
        source("h2", [], state="backoff", failures=2),
    ]
    events = [
        assign(0.1, "me", 0, 200),
        assign(0.1, "h1", 200, 300),
        assign(0.1, "h2", 300, 400),
        failure(0.9, "h2", 300, 400, "reset"),
        assign(1.0, "h1", 100, 150),
    ]
    leases = [
        LeaseView(source="me", start=150, end=200, duplicate=False, age=1.0),
        LeaseView(source="h1", start=250, end=300, duplicate=False, age=4.0),
    ]
    d = download(progress=progress(size, 200, sources), events=as_json(events))
    view = views.details_view(d, node_id="me", leases=leases)
    assert [(b.source, b.left, b.width, b.colour) for b in view.blocks] == [
        ("me", 0.0, 25.0, 0),
        ("h1", 25.0, 12.5, 1),
        ("h1", 50.0, 12.5, 1),
    ]
    assert [(b.source, b.left, b.width) for b in view.in_flight] == [
        ("me", 37.5, 12.5),
        ("h1", 62.5, 12.5),
    ]
    assert view.blocks[1].style == "left:25.0000%;width:12.5000%"
    assert [s.id for s in view.contributors] == ["me", "h1"]  # h2 put nothing in the file
    states = {s.id: s.state for s in view.sources}
    assert states == {"me": "active", "h1": "stalled", "h2": "backing off"}
    assert view.sources[0].role == "this node → origin"
    assert view.sources[2].note == "300 B–400 B: reset"
    assert view.refetched == ()  # h2's range was not assigned again (yet)
    assert [e.kind for e in view.timeline][:2] == ["assign", "failure"]  # newest first
    assert view.timeline[1].detail == "300 B–400 B: reset"
    assert view.ticks[-1] == (100.0, "400 B")


def test_sources_of_a_finished_download() -> None:
    sources = [source("me", [[0, 300]]), source("h1", [[300, 400]], failures=3)]
    events = [
        assign(0.1, "h1", 300, 500),
        failure(0.5, "h1", 300, 500, "reset"),
        assign(0.6, "me", 400, 500),
    ]
    result = {"path": "/d/f", "size": 500, "elapsed": 1.0, "verified": [], "digests": {}}
    d = download(
        "done", progress=progress(500, 500, sources), events=as_json(events), result=result
    )
    view = views.details_view(d, node_id="me")
    assert {s.id: s.state for s in view.sources} == {"me": "finished", "h1": "dropped out"}
    assert [(r.left, r.width) for r in view.refetched] == [(80.0, 20.0)]
    assert view.timeline[0].label == "reassign"
    assert view.verification.status == "ok"
    assert "size checked" in view.verification.title


@pytest.mark.parametrize(
    ("fields", "status", "title"),
    [
        (
            {
                "state": "done",
                "result": {"verified": ["sha256"], "digests": {"sha256": "ab"}, "size": 1},
            },
            "ok",
            "Verified: sha256",
        ),
        (
            {"state": "failed", "error": {"code": "checksum_mismatch", "message": "sha256: x"}},
            "failed",
            "Verification failed",
        ),
        (  # a 404 is no verification failure: the error itself is shown with the summary
            {"state": "failed", "error": {"code": "origin_unusable", "message": "404"}},
            "cancelled",
            "Not verified: the download failed",
        ),
        ({"state": "cancelled"}, "cancelled", "Cancelled"),
        ({"state": "running", "progress": {"stage": "verifying"}}, "pending", "Verifying"),
    ],
)
def test_verification(fields: dict[str, Any], status: str, title: str) -> None:
    result = views.verification(download(**fields))
    assert result.status == status
    assert result.title.startswith(title)


def _report(methods: list[str], helper_bytes: int, sampled: int) -> dict[str, Any]:
    return {
        "methods": methods, "helper_bytes": helper_bytes, "helper_streams": 3,
        "sampled_streams": sampled, "sampled_bytes": sampled * 16384, "sample_fraction": 0.01,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("report", "status", "title"),
    [
        (_report(["sampled"], 5 * MiB, 3), "ok", "Spot-checked"),
        (_report([], 5 * MiB, 0), "failed", "NOT verified"),
        (_report([], 0, 0), "ok", "Complete: size checked"),
        ({"methods": "garbage"}, "ok", "Complete: size checked"),  # shown, never a 500
    ],
)
def test_verification_says_what_was_and_was_not_checked(
    report: dict[str, Any], status: str, title: str
) -> None:
    result = {"verified": [], "digests": {}, "size": 1, "verification": report}
    shown = views.verification(download(state="done", result=result))
    assert (shown.status, shown.title.split(":")[0]) == (status, title.split(":")[0])


def test_single_stream_downloads_show_one_growing_block() -> None:
    d = download(progress=progress(None, 5 * MiB, [], mode="single-stream"))
    view = views.details_view(d, node_id="me")
    assert not view.size_known
    assert [s.id for s in view.sources] == ["me"]


def test_peer_rows() -> None:
    peer = {
        "node_id": "n2",
        "address": "10.0.0.2",
        "port": 7401,
        "version": "0.1.0",
        "slots": 3,
        "group": "10.0",
        "wan_rate": None,
        "quota_left": 2 * 1024 * MiB,
        "last_seen": 98.0,
        "stats": {"active_streams": 1, "bytes_served": 5 * MiB, "rate_limit": 5 * MiB},
    }
    row = views.peer_row(peer, now=100.0)
    assert (row.address, row.slots, row.rate_limit) == ("10.0.0.2:7401", "1 / 3", "5.0 MiB/s")
    assert (row.quota_left, row.bytes_served, row.last_seen) == ("2.0 GiB", "5.0 MiB", "2.0 s ago")
    unlimited = views.peer_row({**peer, "quota_left": None, "stats": {}}, now=100.0)
    assert (unlimited.rate_limit, unlimited.quota_left) == ("unlimited", "no quota")


@pytest.mark.parametrize(
    "junk",
    [
        {"stats": {"bytes_served": "x", "streams_served": "many", "refused": None}},
        {"stats": {"active_streams": True, "quota_left": -1, "rate_limit": "fast"}},
        {"stats": "not a mapping", "slots": "3", "port": None},
        {"last_seen": "yesterday", "wan_rate": float("nan")},
        {"node_id": None, "address": ["x"], "version": 1.5, "group": {}},
        {"stats": {"bytes_served": float("inf"), "streams_served": 2**70}},
    ],
)
def test_peer_rows_render_unexpected_values_as_unknown(junk: dict[str, Any]) -> None:
    """A peer's JSON is rendered, whatever is in it: one odd value never fails the page."""
    peer = {"node_id": "n2", "address": "10.0.0.2", "port": 7401, "slots": 3} | junk
    row = views.peer_row(peer, now=100.0)
    shown = dataclasses.astuple(row)[:-1]  # every cell is text; is_self last
    assert all(isinstance(cell, str) for cell in shown)
    assert "x" not in row.bytes_served


def test_peer_rows_prefer_the_latest_stats_quota() -> None:
    peer = {"node_id": "n2", "quota_left": None, "stats": {"quota_left": 3 * MiB}}
    assert views.peer_row(peer, now=0.0).quota_left == "3.0 MiB"


# --- failure paths (issue #16) -----------------------------------------------------------------


def test_a_resumed_verified_file_shows_its_earlier_bytes_as_present() -> None:
    result = {"size": 400, "elapsed": 2.0, "verified": ["sha256"], "digests": {"sha256": "ab"},
              "resumed_bytes": 300, "fetched_bytes": 100, "path": "/d/f.bin"}  # fmt: skip
    d = download("done", progress=progress(400, 400, [source("me", [[300, 400]])]), result=result)
    view = views.details_view(d, node_id="me")
    assert [(b.left, b.width) for b in view.resumed] == [(0.0, 75.0)]
    assert "earlier run" in view.resumed[0].title
    assert view.resumed_bytes == "300 B"
    # the average rate is this run's bytes over this run's time, not the resumed ones too
    assert view.row.rate == "50 B/s"
    running = views.details_view(download(progress=progress(400, 100, [])), node_id="me")
    assert running.resumed == ()  # while it runs, what no source wrote may still be missing


@pytest.mark.parametrize(
    ("code", "message", "words"),
    [
        ("error", "internal error: ClientConnectorError(ConnectionKey(host='x'))", "inside"),
        ("cancelled", "CancelledError()", "Cancelled"),
        ("origin_unusable", "HTTP 404 from http://x/f", "refused the file"),
        ("no_sources", "ClientConnectorError(ConnectionKey(...))", "No source could deliver"),
        ("checksum_mismatch", "\n".join(f"line {i}" for i in range(13)), "does not match"),
        ("something_new", "raw text", "The download failed"),
    ],
)
def test_errors_are_told_in_plain_words_with_the_raw_text_kept_aside(
    code: str, message: str, words: str
) -> None:
    row = views.download_row(download("failed", error={"code": code, "message": message}))
    assert row.problem is not None
    assert words in row.problem.line
    assert "\n" not in row.problem.line
    assert "Error(" not in row.problem.line + row.problem.advice
    assert row.problem.advice
    assert row.problem.details == message


# --- rate over time (issue #16) -----------------------------------------------------------------


def test_the_rate_chart_stacks_sources_per_interval() -> None:
    from swarmget.web.views.chart import HEIGHT, WIDTH, rate_chart

    samples = [
        [0.0, {"me": 0, "h1": 0}],
        [1.0, {"me": 100, "h1": 0}],
        [2.0, {"me": 200, "h1": 100}],
    ]
    chart = rate_chart(samples, {"me": 0, "h1": 1})
    assert chart is not None
    assert [a.source for a in chart.areas] == ["me", "h1"]  # in the piece map's order
    assert chart.top == "200 B/s"
    me, h1 = (a.points.split() for a in chart.areas)
    # "me" alone fills the first second to the top of its 100 B/s, then 100 B/s under h1
    assert me[:4] == [
        "0.0,60.0",
        f"{WIDTH / 2:.1f},60.0",
        f"{WIDTH / 2:.1f},60.0",
        f"{WIDTH:.1f},60.0",
    ]
    assert h1[2:4] == [f"{WIDTH / 2:.1f},0.0", f"{WIDTH:.1f},0.0"]
    assert all(0 <= float(p.split(",")[1]) <= HEIGHT for p in me + h1)
    assert "average 150 B/s" in chart.summary
    assert rate_chart(samples[:1], {}) is None  # nothing to draw yet
    assert rate_chart([[0, "junk"], [1, {}]], {}) is None


def test_rate_samples_keep_their_length_at_a_coarser_step() -> None:
    from swarmget.node.rates import RateSamples

    samples = RateSamples(limit=8)
    for t in range(20):
        samples.add(float(t), {"me": t * 10})
    assert len(samples.points) <= 8
    assert samples.points[0][0] == 0.0
    assert samples.points[-1][0] == 19.0
    assert samples.to_json()[-1] == [19.0, {"me": 190}]
    samples.add(19.2, {"me": 200})  # (the final sample, just after the last one)
    assert samples.to_json()[-2:] == [
        [samples.points[-2][0], samples.points[-2][1]],
        [19.2, {"me": 200}],
    ]
    assert samples.points[-2][0] < 19.0


def test_the_details_say_in_one_line_what_the_hub_said() -> None:
    unreachable = {
        "status": "unavailable",
        "hub_url": "http://10.0.0.1:8600",
        "peers": 0,
        "alone": True,
        "error": "connection refused",
    }
    view = views.details_view(download("done", hub=unreachable), node_id="me")
    assert view.hub is not None
    assert view.hub.alone
    assert view.hub.line == "hub http://10.0.0.1:8600 unreachable: downloaded without helpers"
    answered = {**unreachable, "status": "answered", "peers": 3, "alone": False, "error": None}
    view = views.details_view(download("done", hub=answered), node_id="me")
    assert view.hub is not None
    assert view.hub.line == "hub http://10.0.0.1:8600 listed 3 peers"
    assert not view.hub.alone
    assert views.details_view(download("done", hub=None), node_id="me").hub is None
    assert views.details_view(download("done", hub={"status": "?"}), node_id="me").hub is None
