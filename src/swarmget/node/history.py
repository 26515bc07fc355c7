"""The node's download history: every download it ran, kept across restarts.

A small SQLite database (``history.sqlite`` in the node's 0700 state directory, through the
standard library's ``sqlite3``: a node never needs SQLAlchemy). One row per download id: what
was asked (the spec, as the journal writes it), its state, when it was created and when it
ended, and its JSON view (``node.download_json``) as it last was. The download manager writes
a row when a download is created and whenever its state changes; a node that starts reads
them back, so the list of downloads survives a restart.

Bounded: beyond ``MAX_FINISHED`` finished downloads (done, failed, cancelled, stopped) the
download manager forgets the oldest, here too. Calls are tiny synchronous statements on a
local file (a few per download, never per byte), made from the event loop.

The file is opened like any file in the state directory: created ``O_EXCL | O_NOFOLLOW``
with mode 0600 the first time; an existing one must be a regular file of this user, writable
by nobody else, with no other hard link (``safe_files.untrusted_reason``), or the node
refuses to start (``UntrustedFile``). A database that is not ours (corrupt, another schema)
is set aside as ``history.sqlite.broken`` and a new one started: history is a convenience,
never a reason for a node not to run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmget.core.errors import UntrustedFile
from swarmget.core.lifecycle import DownloadState, parse_state
from swarmget.safe_files import lstat_at, open_directory, untrusted_reason

log = logging.getLogger(__name__)

HISTORY_FILE = "history.sqlite"
MAX_FINISHED = 1000  # finished downloads kept; older ones are pruned
_SCHEMA = """
CREATE TABLE IF NOT EXISTS downloads (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    ended REAL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    view TEXT NOT NULL
)
"""
#: bytes per UTC day (``YYYY-MM-DD``, the daily quota's day): received from origins and from
#: peers (helpers and LAN holders) as a requester, served to peers as a helper; received from
#: and served to LAN peers (fetch once per LAN); added to in batches (``node.daily``), never
#: per chunk
_DAILY_SCHEMA = """
CREATE TABLE IF NOT EXISTS daily_bytes (
    day TEXT PRIMARY KEY,
    origin INTEGER NOT NULL DEFAULT 0,
    peer INTEGER NOT NULL DEFAULT 0,
    served INTEGER NOT NULL DEFAULT 0,
    lan_received INTEGER NOT NULL DEFAULT 0,
    lan_served INTEGER NOT NULL DEFAULT 0
)
"""
#: columns an older history's ``daily_bytes`` lacks (added when it is opened)
_DAILY_ADDED = ("lan_received", "lan_served")
_DAY_COLUMNS = "origin, peer, served, lan_received, lan_served"


@dataclass(frozen=True, kw_only=True)
class HistoryRow:
    id: str
    created: float
    ended: float | None
    state: DownloadState
    spec: dict[str, Any]  # ``journal.spec_to_json``
    view: dict[str, Any]  # ``node.download_json`` as it last was


@dataclass(frozen=True, kw_only=True)
class DayBytes:
    """One day's bytes (see ``_DAILY_SCHEMA``)."""

    day: str  # YYYY-MM-DD, UTC
    origin: int = 0
    peer: int = 0
    served: int = 0
    lan_received: int = 0  # from LAN holders (also counted in ``peer``)
    lan_served: int = 0  # to LAN peers from this node's holdings (not in ``served``)


class DownloadHistory:
    """The history database of one state directory (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / HISTORY_FILE
        _prepare_file(state_dir, HISTORY_FILE)
        try:
            self._db = _connect(self.path)
        except sqlite3.DatabaseError as exc:
            log.warning("the download history %s is unreadable (%s): starting anew", self.path, exc)
            os.replace(self.path, self.path.with_name(HISTORY_FILE + ".broken"))
            _prepare_file(state_dir, HISTORY_FILE)
            self._db = _connect(self.path)

    def close(self) -> None:
        self._db.close()

    def save(self, row: HistoryRow) -> None:
        """Insert or replace the row of ``row.id``."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO downloads VALUES (?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.created,
                    row.ended,
                    row.state.value,
                    json.dumps(row.spec),
                    json.dumps(row.view),
                ),
            )

    def load(self) -> list[HistoryRow]:
        """Every row, oldest first (rows this version cannot read are skipped)."""
        cursor = self._db.execute(
            "SELECT id, created, ended, state, spec, view FROM downloads ORDER BY created"
        )
        return list(_rows(cursor.fetchall()))

    def delete(self, ids: list[str]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM downloads WHERE id = ?", [(i,) for i in ids])

    def add_bytes(self, counts: list[DayBytes]) -> None:
        """Add each day's counts to what that day has (one transaction for all)."""
        with self._db:
            self._db.executemany(
                f"INSERT INTO daily_bytes (day, {_DAY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(day) DO UPDATE SET origin = origin + excluded.origin, "
                "peer = peer + excluded.peer, served = served + excluded.served, "
                "lan_received = lan_received + excluded.lan_received, "
                "lan_served = lan_served + excluded.lan_served",
                [(c.day, *_counts(c)) for c in counts],
            )

    def days(self, since: str) -> list[DayBytes]:
        """The days from ``since`` (``YYYY-MM-DD``) on that have counts, oldest first."""
        cursor = self._db.execute(
            f"SELECT day, {_DAY_COLUMNS} FROM daily_bytes WHERE day >= ? ORDER BY day",
            (since,),
        )
        return [_day_bytes(str(row[0]), row[1:]) for row in cursor]

    def total_bytes(self) -> DayBytes:
        """Every day's counts added up (``day`` is empty)."""
        sums = ", ".join(f"COALESCE(SUM({c.strip()}), 0)" for c in _DAY_COLUMNS.split(","))
        row = self._db.execute(f"SELECT {sums} FROM daily_bytes").fetchone()
        return _day_bytes("", row)


def _counts(d: DayBytes) -> tuple[int, ...]:
    return (d.origin, d.peer, d.served, d.lan_received, d.lan_served)


def _day_bytes(day: str, row: tuple[Any, ...]) -> DayBytes:
    origin, peer, served, lan_received, lan_served = (int(x) for x in row)
    return DayBytes(
        day=day,
        origin=origin,
        peer=peer,
        served=served,
        lan_received=lan_received,
        lan_served=lan_served,
    )


def _rows(raw: list[tuple[Any, ...]]) -> Iterator[HistoryRow]:
    for id_, created, ended, state, spec, view in raw:
        known = parse_state(state)
        if known is None:
            continue
        try:
            yield HistoryRow(
                id=str(id_),
                created=float(created),
                ended=None if ended is None else float(ended),
                state=known,
                spec=json.loads(spec),
                view=json.loads(view),
            )
        except (TypeError, ValueError):
            continue


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level="DEFERRED")
    try:
        db.execute(_SCHEMA)
        db.execute(_DAILY_SCHEMA)
        have = {r[1] for r in db.execute("PRAGMA table_info(daily_bytes)")}
        for column in _DAILY_ADDED:  # an older history (names from the constant above)
            if column not in have:
                kind = "INTEGER NOT NULL DEFAULT 0"
                db.execute(f"ALTER TABLE daily_bytes ADD COLUMN {column} {kind}")
        db.commit()
        columns = [r[1] for r in db.execute("PRAGMA table_info(downloads)")]
        if columns != ["id", "created", "ended", "state", "spec", "view"]:
            raise sqlite3.DatabaseError("not a swarmget history table")
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def _prepare_file(state_dir: Path, name: str) -> None:
    """Create ``name`` (0600, never through a link) or check that the one there is ours."""
    fd = open_directory(state_dir)
    try:
        st = lstat_at(fd, name)
        if st is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with contextlib.suppress(FileExistsError):  # (made meanwhile: checked below)
                os.close(os.open(name, flags, 0o600, dir_fd=fd))
            st = lstat_at(fd, name)
        reason = "is gone" if st is None else untrusted_reason(st)
        if reason is not None:
            raise UntrustedFile(f"the download history {state_dir / name} {reason}")
    finally:
        os.close(fd)
