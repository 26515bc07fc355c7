"""Group commit: writes that arrive while one is running are done together by the next.

A heartbeat is a one-row write, and so is the nonce of every signed request; thousands of
nodes make thousands of them a second, each a transaction of its own (on SQLite one at a
time, behind the file lock). ``GroupCommit`` queues them instead: one owned task takes
everything queued (at most ``max_batch`` items) and hands it to ``write`` as one batch, in
one transaction; each caller awaits its own item's result. There is no timer: an idle store
writes a lone item at once, a busy one writes as many as arrived during the previous write,
so batching grows with load and adds no latency when there is none.

``write`` returns one result per item, in order; if it raises, every item of that batch gets
the exception. A caller cancelled while waiting just stops waiting (its item may still be
written). ``run`` is the task; the store starts it on ``start`` and cancels it on ``close``.
With ``stats``, each batch's size and each item's time in the queue are observed under ``kind``
(``swarmget.hub.write_stats``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from swarmget.hub.write_stats import WriteStats

__all__ = ["DEFAULT_MAX_BATCH", "GroupCommit"]

DEFAULT_MAX_BATCH = 500

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class GroupCommit(Generic[_Item, _Result]):
    """Batches of items for ``write`` (see module doc)."""

    def __init__(
        self,
        write: Callable[[Sequence[_Item]], Awaitable[Sequence[_Result]]],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        stats: WriteStats | None = None,
        kind: str = "other",
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._stats = stats
        self._kind = kind
        self._queue: list[tuple[_Item, asyncio.Future[_Result]]] = []
        self._queued_at: list[float] = []
        self._wake = asyncio.Event()
        self.batches = 0  # statistics: batches written

    async def submit(self, item: _Item) -> _Result:
        """Queue ``item`` and wait for its result (``run`` must be running)."""
        future: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._queued_at.append(time.perf_counter())
        self._wake.set()
        return await future

    async def run(self) -> None:
        """Write batches for as long as it runs (until cancelled)."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                    self._observe(self._queued_at[: self._max_batch])
                    del self._queued_at[: self._max_batch]
                    await self._write_batch(batch)
        finally:
            self._cancel_all(self._queue)

    def _observe(self, queued_at: list[float]) -> None:
        """The batch's size and how long each of its items waited for it."""
        if self._stats is None:
            return
        started = time.perf_counter()
        self._stats.sizes.observe(self._kind, len(queued_at))
        for at in queued_at:
            self._stats.waits.observe(self._kind, started - at)

    async def _write_batch(self, batch: list[tuple[_Item, asyncio.Future[_Result]]]) -> None:
        self.batches += 1
        try:
            results = await self._write([item for item, _ in batch])
        except asyncio.CancelledError:
            self._cancel_all(batch)
            raise
        except Exception as exc:  # every caller of the batch gets the store's error
            self._fail_all(batch, exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    @staticmethod
    def _cancel_all(batch: list[tuple[_Item, asyncio.Future[_Result]]]) -> None:
        for _, future in batch:
            future.cancel()

    @staticmethod
    def _fail_all(batch: list[tuple[_Item, asyncio.Future[_Result]]], exc: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)
