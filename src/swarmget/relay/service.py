"""The relay/cache: fetch a URL once, keep it by content, serve it in pieces with hashes.

``Relay.request(url)`` returns the state of the one fetch of ``url``: concurrent requests for
the same URL share it. A fetch first looks in the index: a cached copy is revalidated with
the origin by a conditional request and served if unchanged. Otherwise the file is
downloaded with the foundation's engine (segmented, resumable, validated) into a temporary
directory, hashed once (whole-file sha256 and the sha256 of every ``piece_size`` piece: the
manifest), moved to ``blobs/<sha256>`` and indexed. Blobs are content-addressed, so two URLs
of the same bytes share one blob.

The cache keeps under ``budget`` bytes by evicting least-recently-used blobs, never one that
is being served or fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from swarmget.core.errors import StorageError, SwarmgetError
from swarmget.core.http import Validator
from swarmget.core.manifest import DEFAULT_PIECE_SIZE, Manifest, ManifestBuilder
from swarmget.net.origin import OriginClient
from swarmget.node.engine import Download, DownloadSpec, OriginSource
from swarmget.relay.store import CacheEntry, CacheIndex

READ_BLOCK = 4 * 1024 * 1024


@dataclass
class FetchState:
    id: str
    url: str
    state: str = "fetching"  # fetching, ready, failed
    entry: CacheEntry | None = None
    error: SwarmgetError | None = None
    download: Download | None = None
    hit: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


def build_manifest(path: Path, piece_size: int) -> Manifest:
    """Read ``path`` once; blocking (run it in a thread)."""
    builder = ManifestBuilder(piece_size)
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            builder.feed(block)
    return builder.finish()


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
        clock: Callable[[], float] = time.time,
        max_size: int | None = None,
    ) -> None:
        self.index = index
        self.origin = origin
        self._tg = tg
        self.blobs = cache_dir / "blobs"
        self.tmp = cache_dir / "tmp"
        self.budget = budget
        self.piece_size = piece_size
        self.connections = connections
        self.max_size = max_size
        self._clock = clock
        self.fetches: dict[str, FetchState] = {}  # by id
        self._by_url: dict[str, FetchState] = {}  # the fetch in progress per URL
        self._serving: dict[str, int] = {}  # sha256 -> responses in progress
        self.origin_downloads = 0  # full downloads from origins (for tests and metrics)
        self.blobs.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)  # leftovers of a crashed fetch
        self.tmp.mkdir(parents=True, exist_ok=True)

    # --- fetching ------------------------------------------------------------------------------

    def request(self, url: str) -> FetchState:
        """The fetch of ``url``: the one in progress, or a new one."""
        current = self._by_url.get(url)
        if current is not None and current.state == "fetching":
            return current
        state = FetchState(id=secrets.token_hex(8), url=url)
        self.fetches[state.id] = state
        self._by_url[url] = state
        state.task = self._tg.create_task(self._run(state))
        return state

    async def _run(self, state: FetchState) -> None:
        try:
            state.entry = await self._cached(state) or await self._download(state)
            state.state = "ready"
        except SwarmgetError as exc:
            state.state, state.error = "failed", exc
        except OSError as exc:
            state.state, state.error = "failed", StorageError(f"relay cache: {exc}")
        finally:
            state.done.set()

    async def _cached(self, state: FetchState) -> CacheEntry | None:
        entry = await self.index.get(state.url)
        if entry is None or not self.blob_path(entry.sha256).exists():
            return None
        pinned = Validator(etag=entry.etag, last_modified=entry.last_modified)
        if not (entry.etag or entry.last_modified):
            return None  # nothing to revalidate with: fetch again
        if not await self.origin.is_unchanged(entry.final_url, entry.url, pinned):
            return None
        await self.index.touch(entry.url, self._clock())
        state.hit = True
        return entry

    async def _download(self, state: FetchState) -> CacheEntry:
        workdir = self.tmp / state.id
        workdir.mkdir()
        try:
            spec = DownloadSpec(
                url=state.url, output=workdir / "file", force=True, max_size=self.max_size
            )
            source = OriginSource(self.origin, self.connections, source_id="relay")
            state.download = Download(spec, self.origin, sources=[source])
            result = await state.download.run()
            self.origin_downloads += 1
            manifest = await asyncio.to_thread(build_manifest, result.path, self.piece_size)
            await self._make_room(manifest.size)
            os.replace(result.path, self.blob_path(manifest.sha256))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        info = state.download.pinned
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
        await self.index.put(entry)
        return entry

    # --- the cache -----------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    async def used_bytes(self) -> int:
        return sum(e.size for e in {e.sha256: e for e in await self.index.all()}.values())

    async def _make_room(self, incoming: int) -> None:
        """Evict least-recently-used blobs (not in use) until ``incoming`` fits the budget."""
        by_blob: dict[str, CacheEntry] = {}
        for entry in await self.index.all():
            current = by_blob.get(entry.sha256)
            if current is None or entry.last_used > current.last_used:
                by_blob[entry.sha256] = entry
        used = sum(e.size for e in by_blob.values())
        for entry in sorted(by_blob.values(), key=lambda e: e.last_used):
            if used + incoming <= self.budget:
                return
            if self._serving.get(entry.sha256) or self._fetching(entry.sha256):
                continue
            await self.index.remove_blob(entry.sha256)
            with contextlib.suppress(FileNotFoundError):
                self.blob_path(entry.sha256).unlink()
            used -= entry.size
        if used + incoming > self.budget:
            raise StorageError(
                f"relay cache budget of {self.budget} bytes cannot hold {incoming} more "
                f"(blobs in use: {used} bytes)"
            )

    def _fetching(self, sha256: str) -> bool:
        return any(
            s.state == "fetching" and s.entry is not None and s.entry.sha256 == sha256
            for s in self.fetches.values()
        )

    @contextlib.contextmanager
    def serving(self, sha256: str) -> Iterator[None]:
        """Mark a blob in use while a response sends it (eviction skips it)."""
        self._serving[sha256] = self._serving.get(sha256, 0) + 1
        try:
            yield
        finally:
            self._serving[sha256] -= 1
            if not self._serving[sha256]:
                del self._serving[sha256]
