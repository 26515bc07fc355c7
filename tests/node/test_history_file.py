"""The history database file is opened like every file of the state directory (no links,
ours, private), a broken one is set aside, and the history is bounded."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

import pytest

from swarmget.core.errors import UntrustedFile
from swarmget.core.lifecycle import DownloadState
from swarmget.engine import DownloadSpec
from swarmget.node.downloads import DownloadManager
from swarmget.node.history import HISTORY_FILE, DownloadHistory, HistoryRow
from swarmget.node.journal import spec_to_json


def row(i: int, state: DownloadState = DownloadState.DONE) -> HistoryRow:
    spec = spec_to_json(DownloadSpec(url=f"http://example.test/{i}.bin", output=None))
    view = {"id": f"d{i}", "url": spec["url"], "state": state.value, "created": float(i)}
    return HistoryRow(
        id=f"d{i}", created=float(i), ended=float(i) + 1, state=state, spec=spec, view=view
    )


def test_rows_are_kept_in_a_private_file(tmp_path: Path) -> None:
    history = DownloadHistory(tmp_path)
    history.save(row(1))
    history.save(row(2, DownloadState.PAUSED))
    history.save(row(1, DownloadState.FAILED))  # the same id: replaced
    history.close()
    assert (tmp_path / HISTORY_FILE).stat().st_mode & 0o777 == 0o600
    again = DownloadHistory(tmp_path)
    assert [(r.id, r.state) for r in again.load()] == [
        ("d1", DownloadState.FAILED),
        ("d2", DownloadState.PAUSED),
    ]
    again.delete(["d1"])
    assert [r.id for r in again.load()] == ["d2"]
    again.close()


def test_a_link_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    state = tmp_path / "state"
    state.mkdir()
    (state / HISTORY_FILE).symlink_to(target)
    with pytest.raises(UntrustedFile, match="symbolic link"):
        DownloadHistory(state)


def test_a_file_others_may_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / HISTORY_FILE).write_bytes(b"")
    os.chmod(tmp_path / HISTORY_FILE, 0o666)
    with pytest.raises(UntrustedFile, match="writable by other users"):
        DownloadHistory(tmp_path)


def test_a_file_that_is_no_database_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / HISTORY_FILE).write_bytes(b"not sqlite at all " * 100)
    os.chmod(tmp_path / HISTORY_FILE, 0o600)
    history = DownloadHistory(tmp_path)
    assert history.load() == []
    history.close()
    assert (tmp_path / (HISTORY_FILE + ".broken")).read_bytes().startswith(b"not sqlite")


async def test_the_oldest_finished_downloads_beyond_the_cap_are_forgotten(tmp_path: Path) -> None:
    history = DownloadHistory(tmp_path)
    for i in range(6):
        history.save(row(i))
    history.save(row(0 - 1, DownloadState.PAUSED))  # the oldest, but waiting for its user
    async with asyncio.TaskGroup() as tg:
        manager = DownloadManager(
            tg, cast(Any, None), cast(Any, None), connections=1, history=history, max_finished=3
        )
        manager.resume_journal()
    assert sorted(manager.records) == ["d-1", "d3", "d4", "d5"]
    assert manager.records["d-1"].state is DownloadState.PAUSED
    assert sorted(r.id for r in history.load()) == ["d-1", "d3", "d4", "d5"]
    assert manager.clear_finished() == 3
    assert [r.id for r in history.load()] == ["d-1"]
    history.close()
