"""The downloads a node runs for its local user: create, list, inspect, cancel, pause,
resume, retry, remove; and their history (``node.history``), kept across restarts.

Each download runs as a task owned by the node's task group. It starts at once on this node's
own origin connections; meanwhile the requester asks the hub for the live peers of its group
and health-checks them in parallel (the paper's pre-download phase, no longer in front of
the first byte), and each helper joins the running scheduler as soon as it answered
(``node.helper_search``: how many are checked and used). Downloads are independent:
several run at once, each with its own scheduler, part file and sources.

Pause, resume and retry keep one download one record: the same id, the same row. Pausing
cancels the download's task (its part file and checkpoint stay, as for a node that stops);
resuming or retrying runs a new task for the same record, which goes on from the bytes the
part file holds (``core.resume``). Every state change is written to the history, and the
oldest finished downloads beyond the history's cap are forgotten.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from swarmget.core.errors import Cancelled, SwarmgetError, WrongState
from swarmget.core.events import EventCounters
from swarmget.core.lifecycle import DownloadState
from swarmget.core.urls import redact_url
from swarmget.destination import inside_download_dir
from swarmget.engine import Download, DownloadResult, DownloadSpec, OriginSource
from swarmget.engine.download import FIRST_RANGE
from swarmget.logs import current_download
from swarmget.net.origin import OriginClient
from swarmget.net.peer_client import PeerAddress, PeerSource
from swarmget.node.download_record import DownloadRecord, describe
from swarmget.node.helper_search import (
    MAX_HEALTH_CANDIDATES,
    MAX_HELPERS_PER_DOWNLOAD,
    SwarmContext,
    find_helpers,
)
from swarmget.node.history import MAX_FINISHED, DownloadHistory, HistoryRow
from swarmget.node.hub_report import HubOutcome, HubReport
from swarmget.node.journal import DownloadJournal, JournalEntry, spec_from_json, spec_to_json
from swarmget.node.rates import RateSamples, download_speedup, sample_rates
from swarmget.node.removal import dest_of, remove_download_files
from swarmget.node.tally import DownloadTally

__all__ = [  # the record, its view and the helper search are re-exported for their users
    "MAX_HEALTH_CANDIDATES",
    "MAX_HELPERS_PER_DOWNLOAD",
    "DownloadManager",
    "DownloadRecord",
    "SwarmContext",
    "describe",
    "find_helpers",
    "resolve_destination",
    "same_output",
    "same_request",
    "with_max_size",
]

log = logging.getLogger(__name__)


def resolve_destination(download_dir: Path, requested: str | None) -> Path:
    """The download's output inside ``download_dir`` (``swarmget.destination``'s rule);
    ``DestinationOutside`` for escapes."""
    return inside_download_dir(download_dir, requested)


def with_max_size(spec: DownloadSpec, limit: int | None) -> DownloadSpec:
    """``spec`` limited to ``limit`` bytes too (the smaller limit wins)."""
    if limit is None or (spec.max_size is not None and spec.max_size <= limit):
        return spec
    return dataclasses.replace(spec, max_size=limit)


class DownloadManager:
    def __init__(
        self,
        tg: asyncio.TaskGroup,
        origin: OriginClient,
        swarm: SwarmContext,
        *,
        connections: int,
        journal: DownloadJournal | None = None,
        clock: Callable[[], float] = time.time,
        max_size: int | None = None,
        history: DownloadHistory | None = None,
        max_finished: int = MAX_FINISHED,
        on_hub: Callable[[HubReport], None] | None = None,
    ) -> None:
        """``on_hub`` hears what the hub said to each download, as soon as it did (the
        download's record keeps it too)."""
        self._tg = tg
        self._on_hub = on_hub
        self._history = history
        self._max_finished = max_finished
        self._max_size = max_size  # the node's limit, on top of what each download asks
        self._origin = origin
        self._swarm = swarm
        self._connections = connections
        self._clock = clock
        self.records: dict[str, DownloadRecord] = {}
        #: every download's events counted as they happen (the metrics read these)
        self.counters = EventCounters()
        #: bytes received and downloads finished, counted as they happen (the metrics)
        self.tally = DownloadTally()
        self._journal = journal
        self._shutting_down = False

    def create(
        self,
        spec: DownloadSpec,
        only_helpers: Sequence[str] | None = None,
        *,
        download_id: str | None = None,
        created: float | None = None,
    ) -> DownloadRecord:
        record = DownloadRecord(
            id=download_id or secrets.token_hex(6),
            spec=spec,
            created=self._clock() if created is None else created,
            only_helpers=tuple(only_helpers) if only_helpers is not None else None,
        )
        self.records[record.id] = record
        self._start(record)
        return record

    def create_or_join(
        self, spec: DownloadSpec, only_helpers: Sequence[str] | None = None
    ) -> tuple[DownloadRecord, bool]:
        """The download for ``spec``: a new one; or (True) the one of this node that already
        writes the same output for the same request (``same_request``), resumed if it was
        paused: a second ``get`` of a download the node runs (resumed at its start, or from
        another terminal) follows it instead of failing on its part file. ``WrongState``
        when a download of this node writes that output for another request."""
        helpers = tuple(only_helpers) if only_helpers is not None else None
        for record in self.records.values():
            if not (record.state.active or record.state is DownloadState.PAUSED):
                continue
            if not same_output(record, spec):
                continue
            if not same_request(record, spec, helpers):
                raise WrongState(
                    f"download {record.id} of this node ({record.state.value}) already writes "
                    f"that output from {redact_url(record.spec.url)} with other options: wait "
                    f"for it, or `swarmget cancel {record.id}` first"
                )
            if record.state is DownloadState.PAUSED:
                self.resume(record.id)
            log.info("joined download %s (the same request)", record.id)
            return record, True
        return self.create(spec, helpers), False

    def _start(self, record: DownloadRecord) -> None:
        record.task = self._tg.create_task(self._run(record))
        self._save_journal()
        self._save_history(record)

    def resume_journal(self) -> None:
        """Start again the downloads a previous run of the node was stopped in the middle of
        (they resume from their part files), and list the others of the history as they
        were left (a paused one stays paused)."""
        past = {} if self._history is None else {r.id: r for r in self._history.load()}
        for entry in [] if self._journal is None else self._journal.load():
            if entry.id not in self.records:
                row = past.pop(entry.id, None)
                created = None if row is None else row.created
                self.create(entry.spec, entry.only_helpers, download_id=entry.id, created=created)
        for row in past.values():
            if row.id not in self.records:
                self._restore(row)
        self._prune()

    def _restore(self, row: HistoryRow) -> None:
        """A download of an earlier run, listed as it was left (it does not run)."""
        try:
            spec = spec_from_json(row.spec)
        except (KeyError, TypeError, ValueError, SwarmgetError):
            return  # a row this version cannot read: not listed
        state = row.state
        if state.active:  # the node was killed and the journal lost it: it stopped
            state = DownloadState.STOPPED
        helpers = row.spec.get("helpers")
        self.records[row.id] = DownloadRecord(
            id=row.id,
            spec=spec,
            created=row.created,
            only_helpers=None if not isinstance(helpers, list) else tuple(map(str, helpers)),
            state=state,
            ended=row.ended,
            saved=row.view,
        )

    def shut_down(self) -> None:
        """Stop every download, keeping the unfinished ones in the journal."""
        self._shutting_down = True
        for record in self.records.values():
            if record.task is not None and not record.task.done():
                record.task.cancel()

    def _save_journal(self) -> None:
        if self._journal is None:
            return
        unfinished = [
            JournalEntry(r.id, r.spec, r.only_helpers)
            for r in self.records.values()
            if r.state.active or r.state is DownloadState.STOPPED
        ]
        try:
            self._journal.save(unfinished)
        except OSError as exc:
            log.warning("cannot save the download journal: %s", exc)

    def _save_history(self, record: DownloadRecord) -> None:
        if self._history is None:
            return
        spec = {**spec_to_json(record.spec), "helpers": _helpers_json(record.only_helpers)}
        row = HistoryRow(
            id=record.id,
            created=record.created,
            ended=record.ended,
            state=record.state,
            spec=spec,
            view=describe(record, events=0, rates=True),
        )
        try:
            self._history.save(row)
        except Exception as exc:  # (sqlite3.Error, OSError): history must not stop a download
            log.warning("cannot save the download history: %s", exc)

    def _prune(self) -> None:
        """Forget the oldest finished downloads beyond the cap."""
        finished = sorted(
            (r for r in self.records.values() if r.state.finished),
            key=lambda r: r.created,
            reverse=True,
        )
        self._forget([r.id for r in finished[self._max_finished :]])

    def _forget(self, ids: list[str]) -> None:
        for download_id in ids:
            self.records.pop(download_id, None)
        if ids and self._history is not None:
            try:
                self._history.delete(ids)
            except Exception as exc:  # (sqlite3.Error, OSError)
                log.warning("cannot update the download history: %s", exc)

    def cancel(self, download_id: str) -> DownloadRecord | None:
        record = self.records.get(download_id)
        if record is None:
            return None
        if record.state is DownloadState.PAUSED:  # nothing runs: it ends here
            self._end(record, DownloadState.CANCELLED, Cancelled("cancelled by the user"))
        elif record.task is not None and not record.task.done():
            record.pause_requested = False
            record.task.cancel()
        return record

    def pause(self, download_id: str) -> DownloadRecord:
        """Stop the download, keeping its part file to resume from (``WrongState`` unless it
        is starting or running; ``KeyError`` for an unknown id)."""
        record = self.records[download_id]
        if not record.state.pausable or record.task is None or record.task.done():
            raise WrongState(f"the download is {record.state.value}: it cannot be paused")
        record.pause_requested = True
        record.task.cancel()
        return record

    def resume(self, download_id: str) -> DownloadRecord:
        """Go on with a paused download, under the same id (``WrongState`` unless paused)."""
        record = self.records[download_id]
        if record.state is not DownloadState.PAUSED:
            raise WrongState(f"the download is {record.state.value}: only a paused one resumes")
        self._again(record)
        return record

    def retry(self, download_id: str) -> DownloadRecord:
        """Start a failed or cancelled download again, under the same id (its part file is
        used: ``core.resume``); ``WrongState`` otherwise."""
        record = self.records[download_id]
        if not record.state.retryable:
            raise WrongState(f"the download is {record.state.value}: nothing to retry")
        self._again(record)
        return record

    def _again(self, record: DownloadRecord) -> None:
        if record.task is not None and not record.task.done():  # (its last lines run)
            raise WrongState("the download is still stopping: try again in a moment")
        record.move(DownloadState.STARTING)
        record.download = record.result = record.error = record.saved = record.ended = None
        record.rates = RateSamples()
        record.speedup = None
        record.pause_requested = False
        record.peers_checked = []
        record.hub = None
        self._start(record)

    def remove(self, download_id: str, *, delete_files: bool, download_dir: Path) -> list[str]:
        """Forget a download that does not run (``WrongState`` if it does); with
        ``delete_files`` its file (or part file) in ``download_dir`` goes too."""
        record = self.records[download_id]
        if record.state.active or (record.task is not None and not record.task.done()):
            raise WrongState(f"the download is {record.state.value}: cancel or pause it first")
        where = dest_of(describe(record, events=0), record.spec.output)
        deleted = remove_download_files(download_dir, where) if delete_files else []
        self._forget([record.id])
        self._save_journal()
        return deleted

    def clear_finished(self) -> int:
        """Forget every finished download (the files stay); how many."""
        ids = [r.id for r in self.records.values() if r.state.finished and r.settled()]
        self._forget(ids)
        return len(ids)

    def _end(
        self, record: DownloadRecord, state: DownloadState, error: SwarmgetError | None
    ) -> None:
        record.move(state)
        record.error = error
        record.ended = self._clock()
        if state in (DownloadState.FAILED, DownloadState.CANCELLED):  # (paused, stopped: not ended)
            self.tally.finished(state, record.ended - record.created)
        self._save_journal()
        self._save_history(record)
        self._prune()

    def active(self) -> int:
        return sum(1 for r in self.records.values() if r.state.active)

    async def _run(self, record: DownloadRecord) -> None:
        current_download.set(record.id)  # every log line of this task names the download
        log.info("download started: %s", redact_url(record.spec.url))
        try:
            spec = with_max_size(record.spec, self._max_size)
            own = OriginSource(self._origin, self._connections, source_id=self._swarm.node_id)
            record.download = Download(
                spec,
                self._origin,
                sources=[own],
                relay=self._swarm.relay,
                on_event=self.counters.count,
                on_bytes=self.tally.received,
                group=self._swarm.group,
                first_range=FIRST_RANGE,  # the probe is the first range (issue #14)
            )
            record.move(DownloadState.RUNNING)
            record.result = await self._run_with_helpers(record, record.download)
            record.move(DownloadState.DONE)
            done = record.result
            record.rates.add(done.elapsed, {s.source_id: s.received for s in done.sources})
            record.speedup = download_speedup(done, record.rates, self._swarm.node_id)
            log.info("download done: %s", record.result.path)
            record.ended = self._clock()
        except asyncio.CancelledError:
            if self._shutting_down and not record.pause_requested:  # resume at the next start
                stopped = Cancelled("the node stopped; it resumes when the node starts")
                self._end(record, DownloadState.STOPPED, stopped)
                raise
            if record.pause_requested:
                self._end(record, DownloadState.PAUSED, None)
                log.info("download paused")
                return
            self._end(record, DownloadState.CANCELLED, Cancelled("cancelled by the user"))
            return
        except SwarmgetError as exc:
            self._end(record, DownloadState.FAILED, exc)
            log.warning("download failed (%s): %s", exc.code, exc)
            return
        except Exception as exc:  # a bug: keep the node alive, report it on the download
            log.exception("download %s crashed", record.id)
            error = SwarmgetError(f"internal error: {type(exc).__name__}: {exc}")
            if record.state.active:  # (a bug after the end must not raise again here)
                self._end(record, DownloadState.FAILED, error)
            record.error = error
            return
        self.tally.finished(record.state, self._clock() - record.created)
        self._save_journal()
        self._save_history(record)
        self._prune()

    async def _run_with_helpers(self, record: DownloadRecord, download: Download) -> DownloadResult:
        """The download starts at once (probe, our own connections); the hub is asked for
        peers meanwhile, and each helper joins the running download as soon as it answered
        its health check: a peer that is slow, dead or black-holed delays nothing."""
        joining = asyncio.create_task(self._join_helpers(record, download))
        sampling = asyncio.create_task(sample_rates(record.rates, download.statistics))
        try:
            return await download.run()
        finally:
            joining.cancel()
            sampling.cancel()
            await asyncio.wait([joining, sampling])
            hub = self._swarm.hub
            if record.hub is None and hub is not None:  # it ended before the hub answered
                record.hub = HubReport(outcome=HubOutcome.NO_ANSWER, hub_url=hub.hub_url)

    async def _join_helpers(self, record: DownloadRecord, download: Download) -> None:
        def join(peer: PeerAddress) -> None:
            source = PeerSource(
                self._swarm.peer_session,
                peer,
                self._swarm.secret,
                self._swarm.identity,
                download_id=record.id,
            )
            try:
                download.add_source(source)
            except ValueError:  # listed twice: it is already helping
                return
            record.peers_checked.append(peer.node_id)

        def heard(report: HubReport) -> None:
            record.hub = report
            if self._on_hub is not None:
                self._on_hub(report)
            if report.outcome is HubOutcome.ANSWERED:
                download.hub_answered(report.peers)

        try:
            await find_helpers(
                self._swarm,
                record.only_helpers,
                on_found=join,
                on_hub=heard,
                on_listed=download.expect_helpers,
                warm_url=record.spec.url,
                plan_leads=download.plan_leads,
            )
        except Exception:  # a bug here must not end the download: it goes on alone
            log.exception("finding helpers failed; the download goes on without more")
        finally:
            download.expect_helpers(0)  # the checks are over: who answered has joined


def same_output(record: DownloadRecord, spec: DownloadSpec) -> bool:
    """Does ``spec`` write the file ``record`` writes? The same output path (a file, or a
    directory the same URL names the same file in), or the file ``record`` found it writes."""
    if spec.output is None:
        return False
    if record.spec.output == spec.output:
        return record.spec.url == spec.url or not spec.output.is_dir()
    progress = record.progress()
    return progress is not None and progress.dest == spec.output


def same_request(
    record: DownloadRecord, spec: DownloadSpec, only_helpers: tuple[str, ...] | None
) -> bool:
    """Is ``spec`` what ``record`` was asked for, as far as the file it hands over goes (the
    same URL, digests, checks, limit and helpers; ``force`` aside: the file does not exist
    while it is being written)?"""
    mine = record.spec
    return (
        mine.url == spec.url
        and set(mine.checksums) == set(spec.checksums)
        and mine.restart_if_changed == spec.restart_if_changed
        and mine.verify_sample == spec.verify_sample
        and mine.max_size == spec.max_size
        and record.only_helpers == only_helpers
    )


def _helpers_json(helpers: tuple[str, ...] | None) -> list[str] | None:
    return None if helpers is None else list(helpers)
