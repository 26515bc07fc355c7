"""The output file: byte ranges written in place, and what is known to be on disk.

A download to ``DEST`` uses three names next to it, in the same directory (so that the final
rename is atomic and never crosses file systems)::

    DEST.part            the data, preallocated to its final size, written at any offset
    DEST.part.json       the control file: the ResumeKey and the byte ranges known to be on disk
    DEST.part.json.tmp   the next control file while it is written (then renamed over the last)

Theory of operation. ``write_at`` ``pwrite``s in a worker thread and, once the call returned,
adds the range to ``written`` (in memory). ``checkpoint`` snapshots ``written``, ``fdatasync``s
the data file and then atomically replaces the control file with the snapshot. Every range in
the snapshot was written before the ``fdatasync`` began, so the control file never claims a
byte that is not on disk, whenever the process is killed. A restart (the file changed on the
server) replaces the control file with an empty one *before* it truncates the data. ``written``
only grows; the control file is rewritten only when it changed.

``DEST`` itself appears only in ``finalize``, by an atomic rename (no-clobber unless ``force``).
The data file is ``flock``ed while open, so two processes cannot write the same download.

Files are handled like network input (see ``swarmget.safe_files``). Every name is opened
relative to a descriptor of the destination directory, never through a symbolic link; new
files are created with ``O_EXCL`` and mode 0600, the control file through a temporary
created afresh. An existing data or control file is resumed from only when it is a regular
file of this user that no one else can write and that has no other hard link; anything
else at those names (a link, a device, another user's file, a group-writable one) is left
untouched and the open fails with ``UntrustedFile`` (exit 6): a stranger's file is never
resumed, nor written into, nor silently replaced. The finished file gets mode 0644 minus
the umask, and the rename publishes exactly the inode that was written. ``force`` replaces
a regular file or a symbolic link at ``DEST`` (never the link's target), nothing else.

A size the file system cannot hold (more than its free space plus what the data file
already holds, or more than any file can be) fails with ``InsufficientStorage`` and one
over the caller's ``max_size`` with ``FileTooLarge``, both before anything is created;
these checks and the final rename live in ``swarmget.destination``.

Unknown size (a chunked origin, one stream): ``ResumeKey.size`` is None. There is no
preallocation and no control file; writes must be sequential appends, and a later run always
starts over, because there is nothing to tell whether the origin still serves the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import fcntl
import functools
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple, TypeVar

from swarmget.core.errors import StorageError, UntrustedFile
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.destination import (
    MAX_FILE_SIZE,
    check_destination,
    check_destination_at,
    check_name,
    check_size,
    check_space,
    no_space_error,
    publish,
    storage_error,
    too_large_for_system,
)
from swarmget.safe_files import (
    create_exclusive_at,
    fsync_dir,
    lstat_at,
    open_directory,
    open_existing_at,
    published_mode,
    read_trusted_at,
    require_trusted,
)

__all__ = [
    "CONTROL_SUFFIX",
    "PART_SUFFIX",
    "PartFile",
    "ResumeKey",
    "ResumeState",
    "check_destination",
    "check_size",
    "control_path_for",
    "open_part_file",
    "part_path_for",
    "stored_resume_key",
]

PART_SUFFIX = ".part"
CONTROL_SUFFIX = ".part.json"
_TMP_SUFFIX = ".tmp"
_CONTROL_FORMAT = "swarmget-part"
_CONTROL_VERSION = 2

_T = TypeVar("_T")
_IOV_MAX = 1024  # chunks per pwritev call (Linux IOV_MAX)
_CONTROL_LIMIT = 64 * 1024 * 1024  # a control file larger than this is not ours
Buffer = bytes | bytearray | memoryview

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_FALLOCATE_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


def part_path_for(dest: Path) -> Path:
    """``DEST.part``: where the data lives until ``finalize``."""
    return dest.with_name(dest.name + PART_SUFFIX)


def control_path_for(dest: Path) -> Path:
    """``DEST.part.json``: the control file that makes resuming possible."""
    return dest.with_name(dest.name + CONTROL_SUFFIX)


class ResumeState(enum.StrEnum):
    """What ``open_part_file`` found next to the destination."""

    NEW = "new"  # nothing to resume: start from zero
    RESUMED = "resumed"  # same key, data file intact: ``written`` comes from the control file
    RESTARTED_CHANGED = "restarted_changed"  # a control file for another key (URL, size,
    # validator): the file changed on the server, the old data was dropped
    RESTARTED_UNUSABLE = "restarted_unusable"  # a control file we cannot trust (unreadable,
    # or the data file is missing or has the wrong size): the old data was dropped


@dataclass(frozen=True, kw_only=True, slots=True)
class ResumeKey:
    """Identifies the bytes being downloaded, so that a later run resumes only the same file.

    Resuming requires equal ``url``, ``size`` and validators. ``final_url`` (after redirects)
    is recorded for diagnostics but not compared: mirrors behind a redirector may change. With
    neither validator known, only the size protects a resume against a changed file.
    """

    url: str
    final_url: str
    size: int | None
    validator_etag: str | None = None
    validator_last_modified: str | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 0:
            raise ValueError(f"negative size {self.size}")

    def allows_resume_from(self, stored: ResumeKey) -> bool:
        """True when data recorded under ``stored`` is valid for this key."""
        return self.size is not None and self._identity() == stored._identity()

    def _identity(self) -> tuple[object, ...]:
        return (self.url, self.size, self.validator_etag, self.validator_last_modified)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "final_url": self.final_url,
            "size": self.size,
            "etag": self.validator_etag,
            "last_modified": self.validator_last_modified,
        }

    @classmethod
    def from_json(cls, obj: Any) -> ResumeKey:
        """Parse ``to_json`` output; ValueError (or TypeError) if it is malformed."""
        fields = (obj["url"], obj["final_url"], obj["etag"], obj["last_modified"])
        if not all(isinstance(f, str | None) for f in fields) or not isinstance(obj["size"], int):
            raise ValueError("malformed resume key")
        return cls(
            url=obj["url"],
            final_url=obj["final_url"],
            size=obj["size"],
            validator_etag=obj["etag"],
            validator_last_modified=obj["last_modified"],
        )


# --- blocking helpers (run in worker threads) -----------------------------------------------


def _write_all(fd: int, offset: int, data: Buffer) -> None:
    """``pwrite`` until every byte of ``data`` is at ``offset`` (short writes are retried)."""
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        view, offset = view[n:], offset + n


def _writev_all(fd: int, offset: int, chunks: Sequence[Buffer]) -> None:
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


def current_boot_id() -> str:
    """This boot of the kernel (Linux); "" where unknown (then only synced ranges count)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _create_tmp(dir_fd: int, name: str) -> int:
    """Create the temporary control file afresh. Whatever is at its name (a leftover of a
    killed run, or a link planted there) is unlinked first: unlink never follows a link."""
    try:
        return create_exclusive_at(dir_fd, name, os.O_WRONLY)
    except FileExistsError:
        os.unlink(name, dir_fd=dir_fd)
        return create_exclusive_at(dir_fd, name, os.O_WRONLY)


def _write_control(
    dir_fd: int,
    path: Path,
    key: ResumeKey,
    written: RangeSet,
    synced: RangeSet | None = None,
    *,
    durable: bool = True,
) -> None:
    """Atomically replace the control file: write a new temporary and rename it over the old.

    ``written`` are ranges whose ``pwrite`` returned (in the page cache: they survive the
    process being killed, not a crash of the machine); ``synced`` those covered by an
    ``fdatasync``. ``durable`` also fsyncs the control file and its directory.
    """
    payload = {
        "format": _CONTROL_FORMAT,
        "version": _CONTROL_VERSION,
        "key": key.to_json(),
        "boot_id": current_boot_id(),
        "written": written.as_pairs(),
        "synced": (written if synced is None else synced).as_pairs(),
    }
    tmp = path.name + _TMP_SUFFIX
    fd = _create_tmp(dir_fd, tmp)
    try:
        _write_all(fd, 0, json.dumps(payload, separators=(",", ":")).encode())
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    if durable:
        fsync_dir(dir_fd)


_Stored = tuple[ResumeKey, RangeSet] | Literal["missing", "corrupt"]


def _read_control(dir_fd: int, path: Path) -> _Stored:
    """The key and ranges recorded in ``path``; "corrupt" for anything we cannot use.
    ``UntrustedFile`` for a control file that is not safely this user's own."""
    try:
        raw = read_trusted_at(dir_fd, path.name, path, _CONTROL_LIMIT)
    except (OSError, ValueError):
        return "corrupt"
    if raw is None:
        return "missing"
    try:
        obj = json.loads(raw)
        if obj["format"] != _CONTROL_FORMAT or obj["version"] != _CONTROL_VERSION:
            return "corrupt"
        # Written-but-unsynced ranges are in the page cache, and only as long as this boot.
        same_boot = bool(obj["boot_id"]) and obj["boot_id"] == current_boot_id()
        trusted = obj["written"] if same_boot else obj["synced"]
        return ResumeKey.from_json(obj["key"]), RangeSet.from_pairs(trusted)
    except (KeyError, TypeError, ValueError):
        return "corrupt"


def _decide(key: ResumeKey, stored: _Stored, data_size: int) -> ResumeState:
    if stored == "missing":
        return ResumeState.NEW
    if stored == "corrupt":
        return ResumeState.RESTARTED_UNUSABLE
    stored_key, written = stored
    if not key.allows_resume_from(stored_key):
        return ResumeState.RESTARTED_CHANGED
    if not written:
        return ResumeState.NEW
    bounds = written.bounds()
    if data_size != key.size or bounds is None or bounds.end > data_size:
        return ResumeState.RESTARTED_UNUSABLE
    return ResumeState.RESUMED


def _open_data(dir_fd: int, path: Path) -> int:
    """Open the trusted data file, or create it anew, and lock it against other swarmget
    processes. Never through a link; ``UntrustedFile`` for anything but our own file."""
    try:
        fd = _open_or_create(dir_fd, path)
    except OSError as exc:
        raise storage_error("opening", path, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StorageError(f"{path} is being written by another swarmget process") from exc
    except OSError:
        pass  # no locking on this file system (ENOLCK): carry on unlocked
    return fd


def _open_or_create(dir_fd: int, path: Path) -> int:
    for _attempt in range(3):
        fd = open_existing_at(dir_fd, path.name, os.O_RDWR, path)
        if fd is not None:
            return fd
        with contextlib.suppress(FileExistsError):  # appeared meanwhile: look at it again
            return create_exclusive_at(dir_fd, path.name, os.O_RDWR)
    raise StorageError(f"{path} keeps appearing and disappearing; is something else at work?")


def _allocate(fd: int, path: Path, size: int, *, preallocate: bool) -> None:
    """Give the data file its final size, reserving the blocks when ``preallocate``."""
    if size > MAX_FILE_SIZE:
        raise too_large_for_system(path, size)
    if preallocate and size > 0 and hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno in _NO_SPACE or exc.errno == errno.EFBIG:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # give back whatever was reserved
                if exc.errno == errno.EFBIG:
                    raise too_large_for_system(path, size) from exc
                raise no_space_error(path, size, None) from exc
            if exc.errno not in _FALLOCATE_UNSUPPORTED:
                raise storage_error("preallocating", path, exc) from exc
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise too_large_for_system(path, size) from exc
        raise storage_error("resizing", path, exc) from exc


def _start_over(
    dir_fd: int, fd: int, part: Path, control: Path, key: ResumeKey, *, preallocate: bool
) -> None:
    """Drop old data. The control file is emptied (or removed) before the data is touched."""
    try:
        if key.size is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control.name, dir_fd=dir_fd)
        else:
            _write_control(dir_fd, control, key, RangeSet())
        os.ftruncate(fd, 0)
    except OSError as exc:
        raise storage_error("resetting", part, exc) from exc
    if key.size is not None:
        _allocate(fd, part, key.size, preallocate=preallocate)


class _Opened(NamedTuple):
    dir_fd: int
    fd: int
    state: ResumeState
    written: RangeSet


def _open_blocking(
    dest: Path,
    key: ResumeKey,
    *,
    force: bool,
    preallocate: bool,
    max_size: int | None,
    expected_size: int | None,
) -> _Opened:
    size = key.size if key.size is not None else expected_size
    check_size(dest, size, max_size)
    if size is not None and size > MAX_FILE_SIZE:
        raise too_large_for_system(part_path_for(dest), size)
    try:
        dir_fd = open_directory(dest.parent)
    except OSError as exc:
        raise storage_error("opening", dest.parent, exc) from exc
    try:
        fd, state, written = _open_in(dir_fd, dest, key, size, force=force, preallocate=preallocate)
    except BaseException:
        os.close(dir_fd)
        raise
    return _Opened(dir_fd, fd, state, written)


def _open_in(
    dir_fd: int, dest: Path, key: ResumeKey, size: int | None, *, force: bool, preallocate: bool
) -> tuple[int, ResumeState, RangeSet]:
    check_name(dir_fd, dest)
    check_destination_at(dir_fd, dest, force=force)
    part, control = part_path_for(dest), control_path_for(dest)
    if size is not None:
        try:
            existing = lstat_at(dir_fd, part.name)
        except OSError as exc:
            raise storage_error("opening", part, exc) from exc
        if existing is not None:
            require_trusted(existing, part)
        held = existing.st_blocks * 512 if existing is not None else 0
        check_space(dir_fd, part, size, held)
    fd = _open_data(dir_fd, part)
    try:
        stored = _read_control(dir_fd, control)
        state = _decide(key, stored, os.fstat(fd).st_size)
        if state is ResumeState.RESUMED:
            assert isinstance(stored, tuple)
            return fd, state, stored[1]
        _start_over(dir_fd, fd, part, control, key, preallocate=preallocate)
        return fd, state, RangeSet()
    except BaseException:
        os.close(fd)
        raise


def _close_if_opened(fut: asyncio.Future[_Opened]) -> None:
    """Done-callback for an open whose caller was cancelled: do not leak the descriptors."""
    if not fut.cancelled() and fut.exception() is None:
        os.close(fut.result().fd)
        os.close(fut.result().dir_fd)


def _seal(fd: int, *, sync: bool) -> None:
    """Give the finished data file the mode of a normal file (0644 minus the umask: it was
    0600 while incomplete), and ``fsync`` it when ``sync``."""
    os.fchmod(fd, published_mode())
    if sync:
        os.fsync(fd)


# --- the async API ----------------------------------------------------------------------------


async def stored_resume_key(dest: Path) -> ResumeKey | None:
    """The key recorded by an earlier run for ``dest`` (None: none, unreadable, or not
    safely this user's; then ``open_part_file`` says why).

    Lets a caller decide what to do about a changed file *before* ``open_part_file``
    restarts (and so drops) the old data.
    """
    stored = await asyncio.to_thread(_stored_key_blocking, dest)
    return None if isinstance(stored, str) else stored[0]


def _stored_key_blocking(dest: Path) -> _Stored:
    try:
        dir_fd = open_directory(dest.parent)
    except OSError:
        return "missing"
    try:
        return _read_control(dir_fd, control_path_for(dest))
    except UntrustedFile:
        return "corrupt"
    finally:
        os.close(dir_fd)


async def open_part_file(
    dest: Path,
    key: ResumeKey,
    *,
    force: bool,
    preallocate: bool = True,
    max_size: int | None = None,
    expected_size: int | None = None,
) -> PartFile:
    """Open ``DEST.part`` for ``key``, resuming a previous run of the same download if possible.

    Raises ``DestinationExists`` if ``dest`` exists (or is a directory) and not ``force``
    (or is neither a regular file nor a link); ``InvalidDestination`` if the name is too
    long for the control file's name to fit; ``FileTooLarge`` if ``key.size`` exceeds
    ``max_size``; ``InsufficientStorage`` if the file system cannot hold ``key.size`` bytes
    (these three before anything is created); ``UntrustedFile`` if the data or control file
    is not safely this user's own (see the module docstring); ``StorageError`` if the files
    cannot be created, another process holds them, or preallocating fails (then
    ``DEST.part`` is left empty and the control file is kept). See
    ``PartFile.resume_state`` for what was found. ``preallocate=False`` only sets the size
    (a sparse file), like ``posix_fallocate`` falling back on file systems without it. With
    an unknown size, appends beyond ``max_size`` raise ``FileTooLarge``, and
    ``expected_size`` (a length the origin announced without serving ranges) is checked
    against ``max_size`` and the free space like a known size.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(
        _open_blocking,
        dest,
        key,
        force=force,
        preallocate=preallocate,
        max_size=max_size,
        expected_size=expected_size,
    )
    fut = loop.run_in_executor(None, call)
    try:
        opened = await asyncio.shield(fut)
    except asyncio.CancelledError:
        fut.add_done_callback(_close_if_opened)
        raise
    return PartFile(dest=dest, key=key, force=force, opened=opened, max_size=max_size)


class PartFile:
    """One download's data file and control file; see the module docstring.

    Use ``open_part_file`` to make one, and ``async with part:`` (or ``close()``) to release
    it. All methods must be called from the event loop thread that opened it.
    """

    def __init__(
        self,
        *,
        dest: Path,
        key: ResumeKey,
        force: bool,
        opened: _Opened,
        max_size: int | None = None,
    ) -> None:
        self.dest = dest
        self.key = key
        self.part_path = part_path_for(dest)
        self.control_path = control_path_for(dest)
        self.resume_state = opened.state
        self._force = force
        self._max_size = max_size
        self._fd = opened.fd
        self._dir_fd = opened.dir_fd
        st = os.fstat(opened.fd)
        self._identity = (st.st_dev, st.st_ino)
        self._open = True
        self._written = opened.written
        self._saved = opened.written.copy()  # what the control file on disk claims
        self._synced = opened.written.copy()  # what an fdatasync covered (or a past boot's)
        self._append_at = 0  # unknown size: where the next append must start
        self._sync_failed: StorageError | None = None
        self._checkpoint_lock = asyncio.Lock()
        self._inflight: set[asyncio.Future[Any]] = set()

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
            target = self._claim(offset, view.nbytes)
        if target.is_empty():
            return
        call = functools.partial(_write_all, self._fd, offset, data)
        try:
            await self._run(call, on_success=functools.partial(self._written.add, target))
        except OSError as exc:
            raise storage_error("writing", self.part_path, exc, kept=True) from exc

    async def write_chunks_at(self, offset: int, chunks: Sequence[Buffer]) -> None:
        """Like ``write_at`` for the concatenation of ``chunks``, without joining them (one
        ``pwritev``: the chunks aiohttp handed us are written without another copy)."""
        self._check_open()
        length = sum(memoryview(c).nbytes for c in chunks)
        target = self._claim(offset, length)
        if target.is_empty():
            return
        call = functools.partial(_writev_all, self._fd, offset, list(chunks))
        try:
            await self._run(call, on_success=functools.partial(self._written.add, target))
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
                await self._run(functools.partial(os.fdatasync, self._fd))
            except OSError as exc:
                self._sync_failed = storage_error("syncing", self.part_path, exc)
                raise self._sync_failed from exc
            self._synced = snapshot
        call = functools.partial(
            _write_control,
            self._dir_fd,
            self.control_path,
            self.key,
            snapshot,
            self._synced,
            durable=durable,
        )
        try:
            await self._run(call)
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
        await self._drain()  # writes whose callers were cancelled still count
        if self.key.size is not None and not self.is_complete():
            missing = self._written.missing(ByteRange(0, self.key.size)).total()
            raise ValueError(f"cannot finalize {self.part_path}: {missing} bytes not written")
        self._open = False
        try:
            async with self._checkpoint_lock:
                await self._checkpoint_locked(durable=sync)
            await self._run(functools.partial(_seal, self._fd, sync=sync))
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
            await self._run(call)
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
        await self._drain()
        try:
            async with self._checkpoint_lock:
                await self._checkpoint_locked()
        finally:
            self._close_fd()
            self._close_dir()

    async def discard(self) -> None:
        """Close and delete ``DEST.part`` and the control file (never ``DEST``)."""
        self._open = False
        await self._drain()
        self._close_fd()
        if self._dir_fd < 0:
            return  # finalized or closed already: nothing of ours to remove
        try:
            tmp = self.control_path.name + _TMP_SUFFIX
            for name in (self.part_path.name, self.control_path.name, tmp):
                with contextlib.suppress(FileNotFoundError):
                    await self._run(functools.partial(os.unlink, name, dir_fd=self._dir_fd))
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

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed PartFile {self.part_path}", ResourceWarning, stacklevel=1)
            self._close_fd()
        if getattr(self, "_dir_fd", -1) >= 0:
            self._close_dir()

    # --- plumbing -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError(f"{self.part_path} is closed")

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _close_dir(self) -> None:
        if self._dir_fd >= 0:
            fd, self._dir_fd = self._dir_fd, -1
            os.close(fd)

    async def _run(
        self, call: Callable[[], _T], *, on_success: Callable[[], object] | None = None
    ) -> _T:
        """Run ``call`` in a worker thread. If the caller is cancelled the thread still runs to
        the end, and ``_drain`` waits for it before the descriptor is closed. ``on_success``
        runs on the loop once ``call`` returned, whether or not the caller still waits."""
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

    async def settle(self) -> None:
        """Wait for writes still running in threads for callers that were cancelled: then
        ``written`` and the file agree."""
        await self._drain()

    async def _drain(self) -> None:
        while self._inflight:
            await asyncio.wait(set(self._inflight))


def _if_succeeded(fut: asyncio.Future[Any], then: Callable[[], object]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        then()
