"""The downloads a node runs for its local user: create, list, inspect, cancel.

Each download runs as a task owned by the node's task group. It starts at once on this node's
own origin connections; meanwhile the requester asks the hub for the live peers of its group
and health-checks them in parallel (the paper's pre-download phase, no longer in front of
the first byte), and each helper joins the running scheduler as soon as it answered.
However many peers the hub lists, a requester health-checks at most
``MAX_HEALTH_CANDIDATES`` of them (``MAX_HEALTH_CHECKS_IN_FLIGHT`` at once, in the hub's
order: best first) and uses at most ``MAX_HELPERS_PER_DOWNLOAD`` helpers, the first that
answer; the rest are ignored. Downloads are independent: several run at once, each with its own
scheduler, part file and sources.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from swarmget.core.errors import Cancelled, HubError, SwarmgetError
from swarmget.core.events import EventCounters
from swarmget.core.identity import NodeIdentity
from swarmget.core.lifecycle import DownloadState, transition
from swarmget.core.urls import redact_url
from swarmget.destination import inside_download_dir
from swarmget.engine import (
    Download,
    DownloadProgress,
    DownloadResult,
    DownloadSpec,
    OriginSource,
)
from swarmget.logs import current_download
from swarmget.net.hub_client import HubApi
from swarmget.net.origin import OriginClient
from swarmget.net.peer_client import (
    MAX_HEALTH_CHECKS_IN_FLIGHT,
    PeerAddress,
    PeerSource,
    check_health,
)
from swarmget.net.relay_client import RelayClient
from swarmget.node.download_json import download_json
from swarmget.node.journal import DownloadJournal, JournalEntry
from swarmget.node.metrics import DownloadTally
from swarmget.protocol.hub import MAX_PEERS_PER_ANSWER

log = logging.getLogger(__name__)

#: Peers of the hub's list a requester health-checks at most, per download.
MAX_HEALTH_CANDIDATES = 64
#: Helpers one download uses at most (besides this node's own origin connections).
MAX_HELPERS_PER_DOWNLOAD = 16


def resolve_destination(download_dir: Path, requested: str | None) -> Path:
    """The download's output inside ``download_dir`` (``swarmget.destination``'s rule);
    ``DestinationOutside`` for escapes."""
    return inside_download_dir(download_dir, requested)


def with_max_size(spec: DownloadSpec, limit: int | None) -> DownloadSpec:
    """``spec`` limited to ``limit`` bytes too (the smaller limit wins)."""
    if limit is None or (spec.max_size is not None and spec.max_size <= limit):
        return spec
    return dataclasses.replace(spec, max_size=limit)


@dataclass
class DownloadRecord:
    id: str
    spec: DownloadSpec
    created: float
    only_helpers: tuple[str, ...] | None = None
    state: DownloadState = DownloadState.STARTING  # moved only by ``move`` (see core.lifecycle)
    download: Download | None = None
    result: DownloadResult | None = None
    error: SwarmgetError | None = None
    task: asyncio.Task[None] | None = None
    peers_checked: list[str] = field(default_factory=list)

    def progress(self) -> DownloadProgress | None:
        return self.download.statistics() if self.download is not None else None

    def move(self, target: DownloadState) -> None:
        """Go to ``target``; ``IllegalTransition`` if the lifecycle table forbids it."""
        self.state = transition(self.state, target)


@dataclass(frozen=True, kw_only=True)
class SwarmContext:
    """What a requester needs to find and use helpers."""

    identity: NodeIdentity  # ours: requests to helpers are signed with it
    secret: bytes
    peer_session: aiohttp.ClientSession
    hub: HubApi | None  # a HubClient, or a HubPool of replicated hubs
    health_timeout: float = 2.0
    relay: RelayClient | None = None
    max_candidates: int = MAX_HEALTH_CANDIDATES
    max_helpers: int = MAX_HELPERS_PER_DOWNLOAD
    max_checks_in_flight: int = MAX_HEALTH_CHECKS_IN_FLIGHT

    @property
    def node_id(self) -> str:
        return self.identity.node_id


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
    ) -> None:
        self._tg = tg
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
    ) -> DownloadRecord:
        record = DownloadRecord(
            id=download_id or secrets.token_hex(6),
            spec=spec,
            created=self._clock(),
            only_helpers=tuple(only_helpers) if only_helpers is not None else None,
        )
        self.records[record.id] = record
        record.task = self._tg.create_task(self._run(record))
        self._save_journal()
        return record

    def resume_journal(self) -> None:
        """Start again the downloads a previous run of the node was stopped in the middle of
        (they resume from their part files)."""
        if self._journal is None:
            return
        for entry in self._journal.load():
            if entry.id not in self.records:
                self.create(entry.spec, entry.only_helpers, download_id=entry.id)

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

    def cancel(self, download_id: str) -> DownloadRecord | None:
        record = self.records.get(download_id)
        if record is not None and record.task is not None and not record.task.done():
            record.task.cancel()
        return record

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
            )
            record.move(DownloadState.RUNNING)
            record.result = await self._run_with_helpers(record, record.download)
            record.move(DownloadState.DONE)
            log.info("download done: %s", record.result.path)
        except asyncio.CancelledError:
            if self._shutting_down:  # not the user's wish: resume at the next start
                record.move(DownloadState.STOPPED)
                record.error = Cancelled("the node stopped; it resumes when the node starts")
                self._save_journal()
                raise
            record.move(DownloadState.CANCELLED)
            record.error = Cancelled("cancelled by the user")
        except SwarmgetError as exc:
            record.move(DownloadState.FAILED)
            record.error = exc
            log.warning("download failed (%s): %s", exc.code, exc)
        except Exception as exc:  # a bug: keep the node alive, report it on the download
            log.exception("download %s crashed", record.id)
            if record.state.active:  # (a bug after the end must not raise again here)
                record.move(DownloadState.FAILED)
            record.error = SwarmgetError(f"internal error: {type(exc).__name__}: {exc}")
        self.tally.finished(record.state, self._clock() - record.created)
        self._save_journal()

    async def _run_with_helpers(self, record: DownloadRecord, download: Download) -> DownloadResult:
        """The download starts at once (probe, our own connections); the hub is asked for
        peers meanwhile, and each helper joins the running download as soon as it answered
        its health check: a peer that is slow, dead or black-holed delays nothing."""
        joining = asyncio.create_task(self._join_helpers(record, download))
        try:
            return await download.run()
        finally:
            joining.cancel()
            await asyncio.wait([joining])

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

        try:
            await find_helpers(self._swarm, record.only_helpers, on_found=join)
        except Exception:  # a bug here must not end the download: it goes on alone
            log.exception("finding helpers failed; the download goes on without more")


async def find_helpers(
    swarm: SwarmContext,
    only_helpers: Sequence[str] | None = None,
    on_found: Callable[[PeerAddress], None] | None = None,
) -> list[PeerAddress]:
    """The helpers a download uses: the hub's peers (those of ``only_helpers`` when given)
    that answer a health check, within the bounds of the module doc; none without a hub or
    when the hub is unavailable (the node downloads alone). ``on_found`` is called with
    each as soon as it answered."""
    if swarm.hub is None:
        return []
    try:
        # a group may have more live nodes than one answer lists: ask for the chosen ones
        listed = await swarm.hub.peers(
            only_helpers[:MAX_PEERS_PER_ANSWER] if only_helpers else None
        )
    except HubError as exc:
        log.warning("hub unavailable, downloading alone: %s", exc)
        return []
    candidates = [
        PeerAddress(node_id=p.node_id, url=p.url, slots=p.slots)
        for p in listed
        if p.node_id != swarm.node_id and (only_helpers is None or p.node_id in only_helpers)
    ]
    return await check_health(
        swarm.peer_session,
        candidates[: swarm.max_candidates],
        swarm.secret,
        swarm.identity,
        health_timeout=swarm.health_timeout,
        max_in_flight=swarm.max_checks_in_flight,
        enough=swarm.max_helpers,
        on_healthy=on_found,
    )


def describe(record: DownloadRecord, *, events: int = 50) -> dict[str, Any]:
    """The JSON view of one download for the user API (shape: ``node.download_json``)."""
    download = record.download
    return download_json(
        download_id=record.id,
        url=record.spec.url,
        state=record.state,
        created=record.created,
        peers=record.peers_checked,
        error=record.error,
        progress=record.progress(),
        events=None if download is None else list(download.events)[-events:],
        result=record.result,
    )
