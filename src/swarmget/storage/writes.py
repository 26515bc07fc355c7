"""Blocking writes at offsets, and the worker threads that run them for the event loop."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["Buffer", "WorkerCalls", "write_all", "writev_all"]

_T = TypeVar("_T")
_IOV_MAX = 1024  # chunks per pwritev call (Linux IOV_MAX)
Buffer = bytes | bytearray | memoryview


def write_all(fd: int, offset: int, data: Buffer) -> None:
    """``pwrite`` until every byte of ``data`` is at ``offset`` (short writes are retried)."""
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        view, offset = view[n:], offset + n


def writev_all(fd: int, offset: int, chunks: Sequence[Buffer]) -> None:
    """``pwritev`` the chunks back to back from ``offset``, retrying short writes."""
    views = [memoryview(c).cast("B") for c in chunks]
    while views:
        n = os.pwritev(fd, views[:_IOV_MAX], offset)
        if n <= 0:
            raise OSError(errno.EIO, "pwritev wrote nothing")
        offset += n
        while views and n >= views[0].nbytes:
            n -= views[0].nbytes
            views.pop(0)
        if n:
            views[0] = views[0][n:]


class WorkerCalls:
    """Blocking calls run in worker threads that finish even when their caller is cancelled,
    so that a descriptor is closed only after ``drain``."""

    def __init__(self) -> None:
        self._inflight: set[asyncio.Future[Any]] = set()

    async def run(
        self, call: Callable[[], _T], *, on_success: Callable[[], object] | None = None
    ) -> _T:
        """Run ``call`` in a worker thread. If the caller is cancelled the thread still runs to
        the end, and ``drain`` waits for it. ``on_success`` runs on the loop once ``call``
        returned, whether or not the caller still waits."""
        fut = asyncio.get_running_loop().run_in_executor(None, call)
        self._inflight.add(fut)
        if on_success is not None:
            fut.add_done_callback(lambda f: _if_succeeded(f, on_success))
        fut.add_done_callback(self._forget)
        return await asyncio.shield(fut)

    def _forget(self, fut: asyncio.Future[Any]) -> None:
        self._inflight.discard(fut)
        if not fut.cancelled():
            fut.exception()  # retrieved: the caller may be gone

    async def drain(self) -> None:
        """Wait until no call is running any more."""
        while self._inflight:
            await asyncio.wait(set(self._inflight))


def _if_succeeded(fut: asyncio.Future[Any], then: Callable[[], object]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        then()
