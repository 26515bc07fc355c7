"""``PartFile``: one download's data file, written at offsets, and its checkpoints.

See ``swarmget.storage`` for the theory of operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from swarmget.core.errors import StorageError
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.resume import ResumeKey, StartFresh
from swarmget.destination import check_size, publish, storage_error
from swarmget.safe_files import published_mode
from swarmget.storage.control import (
    TMP_SUFFIX,
    control_path_for,
    part_path_for,
    remove_names,
    write_control,
)
from swarmget.storage.opening import Descriptors, Opened, close_if_opened, open_blocking
from swarmget.storage.writes import Buffer, WorkerCalls, write_all, writev_all

__all__ = ["PartFile", "open_part_file"]


async def open_part_file(
    dest: Path,
    key: ResumeKey,
    *,
    force: bool,
    preallocate: bool = True,
    max_size: int | None = None,
    expected_size: int | None = None,
    restart_if_changed: bool = True,
) -> PartFile:
    """Open ``DEST.part`` for ``key``, resuming a previous run of the same download if possible.

    Raises ``DestinationExists`` if ``dest`` exists (or is a directory) and not ``force``
    (or is neither a regular file nor a link); ``InvalidDestination`` if the name is too
    long for the control file's name to fit; ``FileTooLarge`` if ``key.size`` exceeds
    ``max_size``; ``InsufficientStorage`` if the file system cannot hold ``key.size`` bytes
    (these three before anything is created); ``UntrustedFile`` if the data or control file
    is not safely this user's own (see ``swarmget.storage``); ``StorageError`` if the files
    cannot be created, another process holds them, or preallocating fails (then
    ``DEST.part`` is left empty and the control file is kept). See
    ``PartFile.resume_state`` for what was found. ``preallocate=False`` only sets the size
    (a sparse file), like ``posix_fallocate`` falling back on file systems without it. With
    an unknown size, appends beyond ``max_size`` raise ``FileTooLarge``, and
    ``expected_size`` (a length the origin announced without serving ranges) is checked
    against ``max_size`` and the free space like a known size.

    What an earlier run left is judged once, by ``swarmget.core.resume.decide_resume`` on
    one read of the control file: ``restart_if_changed=False`` raises ``OriginChanged``
    (touching nothing) when the partial data is of the same URL but another size or
    validator; True (the default) starts over then, and ``restart_reason`` says why.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(
        open_blocking,
        dest,
        key,
        force=force,
        preallocate=preallocate,
        max_size=max_size,
        expected_size=expected_size,
        restart_if_changed=restart_if_changed,
    )
    fut = loop.run_in_executor(None, call)
    try:
        opened = await asyncio.shield(fut)
    except asyncio.CancelledError:
        fut.add_done_callback(close_if_opened)
        raise
    return PartFile(dest=dest, key=key, force=force, opened=opened, max_size=max_size)


class PartFile(Descriptors):
    """One download's data file and control file; see ``swarmget.storage``.

    Use ``open_part_file`` to make one, and ``async with part:`` (or ``close()``) to release
    it. All methods must be called from the event loop thread that opened it.
    """

    def __init__(
        self,
        *,
        dest: Path,
        key: ResumeKey,
        force: bool,
        opened: Opened,
        max_size: int | None = None,
    ) -> None:
        self.dest = dest
        self.key = key
        self.part_path = part_path_for(dest)
        self.control_path = control_path_for(dest)
        self.resume_state = opened.verdict.state
        #: why same-URL data was dropped (the file changed on the server), else None
        self.restart_reason = (
            opened.verdict.reason if isinstance(opened.verdict, StartFresh) else None
        )
        self._force = force
        self._max_size = max_size
        super().__init__(opened, self.part_path)
        st = os.fstat(opened.fd)
        self._identity = (st.st_dev, st.st_ino)
        self._open = True
        self._written = opened.written.copy()  # the verdict stays as it was read
        self._saved = opened.written.copy()  # what the control file on disk claims
        self._synced = opened.written.copy()  # what an fdatasync covered (or a past boot's)
        self._append_at = 0  # unknown size: where the next append must start
        self._sync_failed: StorageError | None = None
        self._checkpoint_lock = asyncio.Lock()
        self._calls = WorkerCalls()

    # --- queries (never block) ----------------------------------------------------------------

    @property
    def size(self) -> int | None:
        """The final size; None while an unknown-size download is still being appended to."""
        if self.key.size is None and self._open:
            return None
        return self.key.size if self.key.size is not None else self._append_at

    @property
    def written(self) -> RangeSet:
        """A copy of the ranges whose ``write_at`` has completed (not necessarily synced)."""
        return self._written.copy()

    def written_prefix(self) -> int:
        """Length of the contiguous written run from offset 0 (what can be hashed already)."""
        first = self._written.first()
        return first.end if first is not None and first.start == 0 else 0

    def is_complete(self) -> bool:
        """True when every byte of a known-size file has been written."""
        size = self.key.size
        return size is not None and self._written.contains(ByteRange(0, size))

    # --- writing ------------------------------------------------------------------------------

    async def write_at(self, offset: int, data: Buffer) -> None:
        """Write ``data`` at ``offset``, then record the range in ``written``.

        Concurrent calls for different offsets are fine. The buffer must not change until the
        call returns. If the call is cancelled, the write still completes in its thread and
        the range is recorded when it does (``settle()`` waits for that). OSError becomes
        ``StorageError``; what was written before stays on disk and in ``written``. ValueError
        for a range outside the file (or, with unknown size, anything but the next append).
        """
        self._check_open()
        with memoryview(data) as view:
            length = view.nbytes
        await self._write(offset, length, functools.partial(write_all, self._fd, offset, data))

    async def write_chunks_at(self, offset: int, chunks: Sequence[Buffer]) -> None:
        """Like ``write_at`` for the concatenation of ``chunks``, without joining them (one
        ``pwritev``: the chunks aiohttp handed us are written without another copy)."""
        self._check_open()
        length = sum(memoryview(c).nbytes for c in chunks)
        await self._write(
            offset, length, functools.partial(writev_all, self._fd, offset, list(chunks))
        )

    async def _write(self, offset: int, length: int, call: Callable[[], None]) -> None:
        target = self._claim(offset, length)
        if target.is_empty():
            return
        try:
            await self._calls.run(call, on_success=functools.partial(self._written.add, target))
        except OSError as exc:
            raise storage_error("writing", self.part_path, exc, kept=True) from exc

    def _claim(self, offset: int, length: int) -> ByteRange:
        target = ByteRange(offset, offset + length)
        if self.key.size is None:
            if offset != self._append_at:
                raise ValueError(f"unknown size: expected an append at {self._append_at}")
            check_size(self.dest, target.end, self._max_size)
            self._append_at = target.end
        elif target.end > self.key.size:
            raise ValueError(f"write {target} beyond the end of a {self.key.size}-byte file")
        return target

    def forget(self, rng: ByteRange) -> None:
        """Bytes of ``rng`` turned out bad: no longer count them as written (they will be
        written again; the next checkpoint records the change)."""
        self._written.subtract(rng)
        self._synced.subtract(rng)

    async def checkpoint(self, *, durable: bool = True) -> None:
        """Record the ranges written so far in the control file.

        ``durable`` first ``fdatasync``s the data, so the ranges survive a crash of the
        machine; otherwise they are recorded as written in this boot only (they survive the
        process being killed, which is what resuming after Ctrl-C or SIGKILL needs) and
        the call is cheap enough to make every second. Does nothing when nothing changed;
        a no-op for unknown size. If syncing the data ever fails, every later checkpoint
        fails too: the kernel may have dropped the dirty pages.
        """
        self._check_open()
        async with self._checkpoint_lock:
            await self._checkpoint_locked(durable=durable)

    async def _checkpoint_locked(self, *, durable: bool = True) -> None:
        if self._sync_failed is not None:
            raise self._sync_failed
        if self.key.size is None or (self._written == self._saved and not durable):
            return
        if durable and self._written == self._synced:
            return
        snapshot = self._written.copy()  # only ranges whose pwrite already returned
        if durable:
            try:
                await self._calls.run(functools.partial(os.fdatasync, self._fd))
            except OSError as exc:
                self._sync_failed = storage_error("syncing", self.part_path, exc)
                raise self._sync_failed from exc
            self._synced = snapshot
        call = functools.partial(
            write_control,
            self._dir_fd,
            self.control_path,
            self.key,
            snapshot,
            self._synced,
            durable=durable,
        )
        try:
            await self._calls.run(call)
        except OSError as exc:
            raise storage_error("saving", self.control_path, exc, kept=True) from exc
        self._saved = snapshot

    # --- ending -------------------------------------------------------------------------------

    async def finalize(self, *, sync: bool = True) -> Path:
        """Sync (unless ``sync=False``, like curl and wget), close and atomically rename
        ``DEST.part`` to ``DEST``; return ``DEST``.

        The file must be complete (ValueError otherwise). Unless opened with ``force``, an
        existing ``DEST`` is never replaced: ``DestinationExists``, and ``DEST.part`` is kept
        with a control file recording it complete. The PartFile is closed either way.
        """
        self._check_open()
        await self._calls.drain()  # writes whose callers were cancelled still count
        if self.key.size is not None and not self.is_complete():
            missing = self._written.missing(ByteRange(0, self.key.size)).total()
            raise ValueError(f"cannot finalize {self.part_path}: {missing} bytes not written")
        self._open = False
        try:
            async with self._checkpoint_lock:
                await self._checkpoint_locked(durable=sync)
            await self._calls.run(functools.partial(_seal, self._fd, sync=sync))
        except OSError as exc:
            raise storage_error("syncing", self.part_path, exc, kept=True) from exc
        finally:
            self._close_fd()
        call = functools.partial(
            publish,
            self._dir_fd,
            self._identity,
            self.part_path,
            self.control_path,
            self.dest,
            force=self._force,
        )
        try:
            await self._calls.run(call)
        except OSError as exc:
            raise storage_error("renaming", self.part_path, exc, kept=True) from exc
        finally:
            self._close_dir()
        return self.dest

    async def close(self) -> None:
        """Checkpoint and close, keeping both files for a later resume. Idempotent."""
        if not self._open:
            return
        self._open = False
        await self._calls.drain()
        try:
            async with self._checkpoint_lock:
                await self._checkpoint_locked()
        finally:
            self._close_fd()
            self._close_dir()

    async def discard(self) -> None:
        """Close and delete ``DEST.part`` and the control file (never ``DEST``)."""
        self._open = False
        await self._calls.drain()
        self._close_fd()
        if self._dir_fd < 0:
            return  # finalized or closed already: nothing of ours to remove
        names = (self.part_path.name, self.control_path.name, self.control_path.name + TMP_SUFFIX)
        try:
            await self._calls.run(functools.partial(remove_names, self._dir_fd, names))
        finally:
            self._close_dir()

    async def __aenter__(self) -> PartFile:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``close()``; while another exception propagates, a failing checkpoint is dropped
        (the control file then still holds the previous, valid checkpoint)."""
        if exc is None:
            await self.close()
            return
        with contextlib.suppress(StorageError):
            await self.close()

    # --- plumbing -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError(f"{self.part_path} is closed")

    async def settle(self) -> None:
        """Wait for writes still running in threads for callers that were cancelled: then
        ``written`` and the file agree."""
        await self._calls.drain()


def _seal(fd: int, *, sync: bool) -> None:
    """Give the finished data file the mode of a normal file (0644 minus the umask: it was
    0600 while incomplete), and ``fsync`` it when ``sync``."""
    os.fchmod(fd, published_mode())
    if sync:
        os.fsync(fd)
