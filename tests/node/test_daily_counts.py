"""The node's bytes per day (issue #16): the live counters' growth is added to the history
database in batches (a flush), a restart keeps it, and the view lists every one of the last
days (pending counts included)."""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

from swarmget.core.lifecycle import DownloadState
from swarmget.core.savings import NoEstimate, Speedup
from swarmget.core.scheduler import SourceInfo, SourceState
from swarmget.engine import DownloadResult
from swarmget.node.daily import Counts, DailyBytes
from swarmget.node.download_json import download_json, speedup_from_json
from swarmget.node.history import HISTORY_FILE, DownloadHistory
from swarmget.node.rates import RateSamples, download_speedup

DAY = 86400.0
T0 = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC).timestamp()  # UTC noon
NO_LAN = {"lan_received": 0, "lan_served": 0}


class Live:
    """Stand-in for the node's counters (they only grow)."""

    def __init__(self) -> None:
        self.now = Counts(origin=0, peer=0, served=0)

    def add(self, origin: int = 0, peer: int = 0, served: int = 0) -> None:
        n = self.now
        self.now = Counts(origin=n.origin + origin, peer=n.peer + peer, served=n.served + served)


def rows(state: Path) -> list[tuple[str, int, int, int]]:
    db = sqlite3.connect(state / HISTORY_FILE)
    try:
        return list(db.execute("SELECT day, origin, peer, served FROM daily_bytes ORDER BY day"))
    finally:
        db.close()


def test_flushes_add_to_the_day_and_survive_a_restart(tmp_path: Path) -> None:
    clock = [T0]
    live = Live()
    history = DownloadHistory(tmp_path)
    daily = DailyBytes(history, lambda: live.now, clock=lambda: clock[0])
    live.add(origin=10, peer=30, served=5)
    assert rows(tmp_path) == []  # nothing written per chunk
    daily.flush()
    live.add(origin=1, peer=2)
    daily.flush()
    daily.flush()  # nothing new: no write, no double count
    clock[0] += DAY
    live.add(served=7)
    daily.flush()
    history.close()
    assert rows(tmp_path) == [("2026-12-05", 11, 32, 5), ("2026-12-06", 0, 0, 7)]

    # a new process: its counters start at zero; the totals go on from the database
    history = DownloadHistory(tmp_path)
    live = Live()
    daily = DailyBytes(history, lambda: live.now, clock=lambda: clock[0])
    assert daily.saved_total() == 32
    live.add(peer=8)  # not flushed yet: shown all the same
    shown = daily.to_json(days=3)
    assert [d["day"] for d in shown["days"]] == ["2026-12-04", "2026-12-05", "2026-12-06"]
    assert shown["days"][0] == {"day": "2026-12-04", "origin": 0, "peer": 0, "served": 0} | NO_LAN
    assert shown["days"][2] == {"day": "2026-12-06", "origin": 0, "peer": 8, "served": 7} | NO_LAN
    assert (shown["saved_today"], shown["saved_total"]) == (8, 40)
    history.close()


def test_without_history_it_counts_this_run_only(tmp_path: Path) -> None:
    live = Live()
    daily = DailyBytes(None, lambda: live.now, clock=lambda: T0)
    live.add(peer=4)
    daily.flush()
    assert daily.to_json(days=1)["days"] == [
        {"day": "2026-12-05", "origin": 0, "peer": 4, "served": 0} | NO_LAN
    ]


def test_an_older_history_file_gains_the_table(tmp_path: Path) -> None:
    DownloadHistory(tmp_path).close()
    db = sqlite3.connect(tmp_path / HISTORY_FILE)
    db.execute("DROP TABLE daily_bytes")
    db.commit()
    db.close()
    history = DownloadHistory(tmp_path)
    history.close()
    assert rows(tmp_path) == []


def test_speedup_json_round_trip() -> None:
    for s in (
        Speedup(fetched_bytes=10, own_origin_bytes=4, peer_bytes=6, elapsed=2.0,
                own_origin_seconds=1.5, factor=2.5),
        Speedup(fetched_bytes=10, own_origin_bytes=0, peer_bytes=10, elapsed=2.0,
                own_origin_seconds=2.0, factor=None, missing=NoEstimate.NO_OWN_BYTES),
    ):  # fmt: skip
        out = download_json(
            download_id="x", url="http://o/f", state=DownloadState.DONE, created=0.0,
            peers=[], error=None, progress=None, events=None, result=None, speedup=s,
        )  # fmt: skip
        assert speedup_from_json(out) == s
    assert speedup_from_json({"id": "x"}) is None


def result(mode: str, sources: tuple[SourceInfo, ...], fetched: int) -> DownloadResult:
    return DownloadResult(
        path=Path("/x"), size=fetched, elapsed=4.0, mode=mode, resumed_bytes=0,
        fetched_bytes=fetched, digests={}, verified=(), sources=sources, last_byte_to_done=0.0,
    )  # fmt: skip


def source(sid: str, received: int) -> SourceInfo:
    return SourceInfo(
        source_id=sid, state=SourceState.IDLE, slots=1, active_leases=0, received=received,
        claimed=received, rate=0.0, failures=0, segments=(), ban_reason=None,
    )  # fmt: skip


def test_a_download_speedup_from_its_sources_and_samples() -> None:
    samples = RateSamples()
    for at, got in ((0.0, {}), (1.0, {"me": 10, "h": 10}), (2.0, {"me": 20, "h": 30})):
        samples.add(at, got)
    samples.add(4.0, {"me": 20, "h": 60})  # our own connections were done after 2 s
    s = download_speedup(
        result("segmented", (source("me", 20), source("h", 60)), 80), samples, "me"
    )
    assert (s.own_origin_bytes, s.peer_bytes, s.own_origin_seconds) == (20, 60, 2.0)
    assert s.factor == 2.0  # 20 B/s in all, 10 B/s of our own


def test_a_single_stream_download_is_all_our_own() -> None:
    s = download_speedup(result("single-stream", (), 80), RateSamples(), "me")
    assert (s.own_origin_bytes, s.peer_bytes, s.factor) == (80, 0, 1.0)


def lan_rows(state: Path) -> list[tuple[str, int, int]]:
    db = sqlite3.connect(state / HISTORY_FILE)
    try:
        sql = "SELECT day, lan_received, lan_served FROM daily_bytes ORDER BY day"
        return list(db.execute(sql))
    finally:
        db.close()


def test_the_group_saving_per_utc_day_survives_a_restart(tmp_path: Path) -> None:
    """LAN bytes served plus LAN bytes received, per UTC day (the daily quota's day)."""
    before_midnight = datetime.datetime(2026, 12, 5, 23, 59, tzinfo=datetime.UTC).timestamp()
    clock = [before_midnight]
    counts = [Counts(origin=0, peer=0, served=0)]
    history = DownloadHistory(tmp_path)
    daily = DailyBytes(history, lambda: counts[0], clock=lambda: clock[0])
    counts[0] = Counts(origin=3, peer=40, served=0, lan_received=40, lan_served=100)
    assert (daily.group_saved_today(), daily.group_saved_total()) == (140, 140)
    daily.flush()
    clock[0] += 120  # 00:01 UTC: a new day
    assert daily.group_saved_today() == 0
    counts[0] = Counts(origin=3, peer=40, served=0, lan_received=40, lan_served=125)
    shown = daily.to_json(days=2)
    assert shown["today"] == "2026-12-06"
    assert (shown["group_saved_today"], shown["group_saved_total"]) == (25, 165)
    assert shown["saved_today"] == 0  # (bytes from peers: none today)
    daily.flush()
    history.close()
    assert lan_rows(tmp_path) == [("2026-12-05", 40, 100), ("2026-12-06", 0, 25)]

    history = DownloadHistory(tmp_path)  # a new process: its counters start at zero
    daily = DailyBytes(history, lambda: Counts(origin=0, peer=0, served=0), clock=lambda: clock[0])
    assert (daily.group_saved_today(), daily.group_saved_total()) == (25, 165)
    history.close()


def test_an_older_daily_table_gains_the_lan_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    DownloadHistory(tmp_path).close()
    db = sqlite3.connect(tmp_path / HISTORY_FILE)
    db.execute("DROP TABLE daily_bytes")
    db.execute(
        "CREATE TABLE daily_bytes (day TEXT PRIMARY KEY, origin INTEGER NOT NULL DEFAULT 0, "
        "peer INTEGER NOT NULL DEFAULT 0, served INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute("INSERT INTO daily_bytes VALUES ('2026-12-05', 1, 2, 3)")
    db.commit()
    db.close()
    history = DownloadHistory(tmp_path)
    history.close()
    assert rows(tmp_path) == [("2026-12-05", 1, 2, 3)]
    assert lan_rows(tmp_path) == [("2026-12-05", 0, 0)]
