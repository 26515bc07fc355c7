"""The relay's cache budget: bytes of the indexed blobs plus bytes reserved by fetches.

The bytes of the indexed blobs (each once) plus the bytes reserved by fetches in progress
stay under ``budget``. A fetch reserves the size its origin announces before the engine
writes a byte (``reserve``), evicting least-recently-used blobs that no response is reading;
a size that cannot fit is ``InsufficientStorage`` (a size over the whole budget evicts
nothing). A fetch of unknown size holds ``GROWTH_STEP`` ahead of what it has written
(``unknown_size_hold``). A finished fetch turns its reservation into its blob (``commit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from swarmget.core.errors import InsufficientStorage
from swarmget.relay.blobs import BlobShelf
from swarmget.relay.store import CacheEntry, CacheIndex

__all__ = ["GROWTH_STEP", "CacheBudget"]

MiB = 1024 * 1024
GROWTH_STEP = 64 * MiB  # what a fetch of unknown size reserves at a time


class CacheBudget:
    """The reservations of the fetches in progress, against the blobs of ``index``."""

    def __init__(self, index: CacheIndex, shelf: BlobShelf, budget: int) -> None:
        self.index = index
        self.shelf = shelf
        self.budget = budget
        self._reserved: dict[str, int] = {}  # fetch id -> bytes of the budget it holds
        self._lock = asyncio.Lock()

    def reserved(self) -> int:
        """Bytes held by fetches in progress."""
        return sum(self._reserved.values())

    def held(self, fetch_id: str) -> int:
        return self._reserved.get(fetch_id, 0)

    def release(self, fetch_id: str) -> None:
        """Fetch ``fetch_id`` is over: what it held is free again."""
        self._reserved.pop(fetch_id, None)

    async def used_bytes(self) -> int:
        """Bytes of the cached blobs plus those reserved by fetches in progress."""
        blobs = await self.index.blobs()
        return sum(b.size for b in blobs) + self.reserved()

    def unknown_size_hold(self, written: int) -> int:
        """What a fetch of unknown size should hold having written ``written`` bytes: a step
        ahead, within the budget while it can be (past it, more than the budget: refused)."""
        return min(written + GROWTH_STEP, max(self.budget, written + 1))

    async def reserve(self, fetch_id: str, total: int, url: str) -> None:
        """Hold ``total`` bytes of the budget for fetch ``fetch_id``, evicting least-recently
        used blobs that nobody reads; InsufficientStorage if they cannot be found."""
        async with self._lock:
            held = self.held(fetch_id)
            if total <= held:
                return
            if total > self.budget:
                raise InsufficientStorage(
                    f"{url} is {total} bytes or more: over the relay's cache budget of "
                    f"{self.budget} bytes"
                )
            await self._make_room(total - held)
            self._reserved[fetch_id] = total

    async def _make_room(self, incoming: int) -> None:
        """Evict least-recently-used blobs (not in use) until ``incoming`` fits the budget.
        Called with the lock held."""
        blobs = await self.index.blobs()
        used = sum(b.size for b in blobs) + self.reserved()
        for blob in sorted(blobs, key=lambda b: b.last_used):
            if used + incoming <= self.budget:
                return
            if self.shelf.in_use(blob.sha256):
                continue
            await self.index.remove_blob(blob.sha256)
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(self.shelf.path(blob.sha256).unlink)
            used -= blob.size
        if used + incoming > self.budget:
            raise InsufficientStorage(
                f"the relay's cache budget of {self.budget} bytes cannot hold {incoming} more "
                f"({used} bytes are being read or fetched)"
            )

    async def commit(self, fetch_id: str, path: Path, entry: CacheEntry) -> None:
        """Move a fetched file into the cache: its reservation becomes its blob."""
        await self.reserve(fetch_id, entry.size, entry.url)  # a no-op when it was announced
        async with self._lock:
            await asyncio.to_thread(os.replace, path, self.shelf.path(entry.sha256))
            await self.index.put(entry)
            self.release(fetch_id)
