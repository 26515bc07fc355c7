"""The relay/cache: fetch a URL once, keep it by content, serve it in pieces with hashes.

``Relay.request(url)`` returns the state of the one fetch of ``url``: concurrent requests for
the same URL share it. A fetch first looks in the index: a cached copy is revalidated with
the origin by a conditional request and served if unchanged. Otherwise the file is
downloaded with the foundation's engine (segmented, resumable, validated) into a temporary
directory, hashed once (whole-file sha256 and the sha256 of every ``piece_size`` piece: the
manifest), moved to ``blobs/<sha256>`` and indexed. Blobs are content-addressed, so two URLs
of the same bytes share one blob.

Every fetch runs in a task owned by the relay's task group and ends as ``ready`` or
``failed``: whatever goes wrong (the origin, the disk, a bug) fails that fetch with an error
code for its clients, never the relay. A finished fetch leaves memory at once; its outcome
is kept in the index for ``FETCH_RECORD_TTL`` seconds, for clients that look it up by id.

The budget (``relay.budget.CacheBudget``): the bytes of the indexed blobs plus the bytes
reserved by fetches in progress stay under ``budget``. A fetch reserves the size its origin
announces before the engine writes a byte; a size that cannot fit fails the fetch with
``InsufficientStorage``. A fetch of unknown size reserves ``GROWTH_STEP`` more whenever what
it has written catches up with its reservation (checked every ``WATCH_INTERVAL``).

Responses reading a blob pin it (eviction skips it); ``ServeLimits`` bounds how many may read
at once, per client address and in total, and how long one may take to accept each block
(the HTTP layer enforces that), so a stalled reader cannot pin a blob for ever. The blob
directory and its readers are ``relay.blobs.BlobShelf``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from swarmget.core.errors import DownloadError, StorageError, SwarmgetError
from swarmget.core.http import Validator
from swarmget.core.lifecycle import FetchPhase
from swarmget.core.manifest import DEFAULT_PIECE_SIZE
from swarmget.engine import Download, DownloadResult, DownloadSpec, OriginSource
from swarmget.net.origin import OriginClient, OriginInfo
from swarmget.relay.blobs import (
    PRIVATE_DIR,
    PRIVATE_FILE,
    BlobShelf,
    ReaderLimit,
    ServeLimits,
    build_manifest,
    private_dir,
)
from swarmget.relay.budget import GROWTH_STEP, CacheBudget
from swarmget.relay.store import CacheEntry, CacheIndex, FetchRecord

log = logging.getLogger(__name__)

__all__ = ["FetchReport", "FetchState", "Relay", "RelayStatistics"]

WATCH_INTERVAL = 0.25  # seconds between checks of a fetch of unknown size
FETCH_RECORD_TTL = 3600.0  # seconds a finished fetch can still be looked up by id
MAX_ERROR_MESSAGE = 2000


@dataclass(frozen=True, kw_only=True)
class FetchReport:
    """What a client is told about a fetch (``progress``: bytes done and the size, while
    fetching)."""

    id: str
    url: str
    state: FetchPhase
    hit: bool = False
    entry: CacheEntry | None = None
    error_code: str | None = None
    error_message: str | None = None
    progress: tuple[int, int | None] | None = None


@dataclass
class FetchState:
    """A fetch in progress (or just finished: whoever waited on ``done`` still holds it)."""

    id: str
    url: str
    state: FetchPhase = FetchPhase.FETCHING
    entry: CacheEntry | None = None
    error: SwarmgetError | None = None
    download: Download | None = None
    hit: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def report(self) -> FetchReport:
        progress = None
        if self.download is not None and self.state is FetchPhase.FETCHING:
            p = self.download.statistics()
            progress = (p.done, p.size)
        return FetchReport(
            id=self.id,
            url=self.url,
            state=self.state,
            hit=self.hit,
            entry=self.entry,
            error_code=None if self.error is None else self.error.code,
            error_message=None if self.error is None else str(self.error)[:MAX_ERROR_MESSAGE],
            progress=progress,
        )


@dataclass(frozen=True, kw_only=True)
class RelayStatistics:
    origin_downloads: int  # full downloads from origins
    hits: int  # fetches answered from the cache
    misses: int  # fetches the cache could not answer (not there, or changed at the origin)
    fetching: int  # fetches in progress
    reserved_bytes: int  # budget held by fetches in progress
    readers: int  # responses reading blobs


class Relay:
    def __init__(
        self,
        index: CacheIndex,
        origin: OriginClient,
        tg: asyncio.TaskGroup,
        *,
        cache_dir: Path,
        budget: int,
        piece_size: int = DEFAULT_PIECE_SIZE,
        connections: int = 4,
        limits: ServeLimits | None = None,
        clock: Callable[[], float] = time.time,
        max_size: int | None = None,
    ) -> None:
        self.index = index
        self.origin = origin
        self._tg = tg
        self.tmp = cache_dir / "tmp"
        self.piece_size = piece_size
        self.connections = connections
        self.limits = limits or ServeLimits()
        self.max_size = max_size
        self._clock = clock
        self.fetches: dict[str, FetchState] = {}  # in progress, by id
        self._by_url: dict[str, FetchState] = {}  # in progress, by URL
        self.origin_downloads = 0  # full downloads from origins (for tests and metrics)
        self.hits = 0
        self.misses = 0
        private_dir(cache_dir)
        self.shelf = BlobShelf(cache_dir / "blobs", self.limits)
        self.cache_budget = CacheBudget(index, self.shelf, budget)
        shutil.rmtree(self.tmp, ignore_errors=True)  # leftovers of a crashed fetch
        private_dir(self.tmp)

    @property
    def budget(self) -> int:
        """Bytes the cached blobs and the fetches in progress may use together."""
        return self.cache_budget.budget

    def statistics(self) -> RelayStatistics:
        return RelayStatistics(
            origin_downloads=self.origin_downloads,
            hits=self.hits,
            misses=self.misses,
            fetching=len(self.fetches),
            reserved_bytes=self.cache_budget.reserved(),
            readers=self.shelf.readers(),
        )

    # --- fetching ------------------------------------------------------------------------------

    def request(self, url: str) -> FetchState:
        """The fetch of ``url``: the one in progress, or a new one."""
        current = self._by_url.get(url)
        if current is not None and current.state is FetchPhase.FETCHING:
            return current
        state = FetchState(id=secrets.token_hex(8), url=url)
        self.fetches[state.id] = state
        self._by_url[url] = state
        state.task = self._tg.create_task(self._run(state))
        return state

    async def finished(self, fetch_id: str) -> FetchReport | None:
        """The outcome of a finished fetch, if it is still known and its blob still cached."""
        record = await self.index.fetch_record(fetch_id)
        if record is None:
            return None
        report = FetchReport(
            id=record.id,
            url=record.url,
            state=record.state,
            hit=record.hit,
            error_code=record.error_code,
            error_message=record.error_message,
        )
        if record.state is not FetchPhase.READY:
            return report
        entry = await self.index.get(record.url)
        if entry is None or entry.sha256 != record.sha256:
            return None  # evicted or replaced since: the client asks again
        return dataclasses.replace(report, entry=entry)

    async def _run(self, state: FetchState) -> None:
        """The whole life of one fetch; never raises (but for cancellation at shutdown)."""
        try:
            await self._settle(state)
            await self._remember(state)
        finally:
            self.cache_budget.release(state.id)
            state.download, state.task = None, None
            state.done.set()
            self.fetches.pop(state.id, None)
            if self._by_url.get(state.url) is state:
                del self._by_url[state.url]

    async def _settle(self, state: FetchState) -> None:
        try:
            state.entry = await self._cached(state) or await self._download(state)
            state.state = FetchPhase.READY
        except SwarmgetError as exc:
            state.state, state.error = FetchPhase.FAILED, exc
        except OSError as exc:
            state.state, state.error = FetchPhase.FAILED, StorageError(f"relay cache: {exc}")
        except Exception as exc:  # a bug must fail this fetch, not the relay
            log.exception("relay: fetch of %s failed unexpectedly", state.url)
            state.state = FetchPhase.FAILED
            state.error = DownloadError(f"the relay failed unexpectedly: {type(exc).__name__}")
        if state.error is not None:
            log.info("relay: fetch of %s failed: %s", state.url, state.error)

    async def _remember(self, state: FetchState) -> None:
        report = state.report()
        record = FetchRecord(
            id=state.id,
            url=state.url,
            state=state.state,
            hit=state.hit,
            sha256=None if state.entry is None else state.entry.sha256,
            error_code=report.error_code,
            error_message=report.error_message,
            finished=self._clock(),
        )
        try:
            await self.index.record_fetch(record, forget_before=record.finished - FETCH_RECORD_TTL)
        except StorageError as exc:
            log.warning("relay: the outcome of fetch %s is not kept: %s", state.id, exc)
        except Exception:  # the fetch is over either way; the relay goes on
            log.exception("relay: the outcome of fetch %s is not kept", state.id)

    async def _cached(self, state: FetchState) -> CacheEntry | None:
        entry = await self._lookup(state)
        if entry is None:
            self.misses += 1
        else:
            state.hit = True
            self.hits += 1
        return entry

    async def _lookup(self, state: FetchState) -> CacheEntry | None:
        """The cache's entry for ``state``'s URL, if it is there and still the origin's."""
        entry = await self.index.get(state.url)
        if entry is None or not self.blob_path(entry.sha256).exists():
            return None
        pinned = Validator(etag=entry.etag, last_modified=entry.last_modified)
        if not (entry.etag or entry.last_modified):
            return None  # nothing to revalidate with: fetch again
        if not await self.origin.is_unchanged(entry.final_url, entry.url, pinned):
            return None
        await self.index.touch(entry.url, self._clock())
        return entry

    async def _download(self, state: FetchState) -> CacheEntry:
        workdir = self.tmp / state.id
        workdir.mkdir(mode=PRIVATE_DIR)
        try:
            spec = DownloadSpec(
                url=state.url, output=workdir / "file", force=True, max_size=self.max_size
            )
            source = OriginSource(self.origin, self.connections, source_id="relay")

            async def admit(info: OriginInfo) -> None:
                await self._admit(state, info)

            download = Download(spec, self.origin, sources=[source], admit=admit)
            state.download = download
            result = await self._run_within_budget(state.id, download)
            self.origin_downloads += 1
            manifest = await asyncio.to_thread(build_manifest, result.path, self.piece_size)
            await asyncio.to_thread(os.chmod, result.path, PRIVATE_FILE)
            info = download.pinned
            assert info is not None
            now = self._clock()
            entry = CacheEntry(
                url=state.url,
                final_url=info.final_url,
                etag=info.validator.etag if info.validator else None,
                last_modified=info.validator.last_modified if info.validator else None,
                manifest=manifest,
                created=now,
                last_used=now,
            )
            await self.cache_budget.commit(state.id, result.path, entry)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        return entry

    async def _admit(self, state: FetchState, info: OriginInfo) -> None:
        """Reserve the announced size before the engine writes a byte."""
        budget = self.cache_budget
        total = budget.unknown_size_hold(0) if info.size is None else info.size
        await budget.reserve(state.id, total, state.url)

    async def _run_within_budget(self, fetch_id: str, download: Download) -> DownloadResult:
        """``download.run()``, failed with InsufficientStorage if it outgrows the budget."""
        try:
            async with asyncio.TaskGroup() as tg:
                run = tg.create_task(download.run())
                watch = tg.create_task(self._hold_growth(fetch_id, download))
                run.add_done_callback(lambda _: watch.cancel())
        except BaseExceptionGroup as group:
            raise _leading(group) from group
        return run.result()

    async def _hold_growth(self, fetch_id: str, download: Download) -> None:
        """Grow the reservation of a fetch of unknown size ahead of what it writes (a size
        announced was reserved whole by ``_admit``: the engine never writes past it)."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            info = download.pinned
            if info is None or info.size is not None:
                continue
            written, budget = download.statistics().done, self.cache_budget
            if written + GROWTH_STEP // 2 > budget.held(fetch_id):
                await budget.reserve(fetch_id, budget.unknown_size_hold(written), download.spec.url)

    # --- the cache and its readers (``BlobShelf``, ``CacheBudget``) -----------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.shelf.path(sha256)

    async def used_bytes(self) -> int:
        """Bytes of the cached blobs plus those reserved by fetches in progress."""
        return await self.cache_budget.used_bytes()

    def reader_refusal(self, client: str) -> ReaderLimit | None:
        """The ``ReaderLimit`` that refuses one more response reading a blob, if any."""
        return self.shelf.reader_refusal(client)

    def serving(self, sha256: str, client: str = "") -> contextlib.AbstractContextManager[None]:
        """Mark a blob in use while a response sends it (eviction skips it)."""
        return self.shelf.serving(sha256, client)

    def open_blob(self, sha256: str) -> tuple[int, os.stat_result] | None:
        """An open descriptor of blob ``sha256`` and its status (``BlobShelf.open``)."""
        return self.shelf.open(sha256)


def _leading(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that says best why a group of tasks failed: the first from our tree."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = list(exc.exceptions)
        else:
            leaves.append(exc)
    return next((e for e in leaves if isinstance(e, SwarmgetError)), leaves[0])
