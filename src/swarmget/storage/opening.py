"""Opening a download's files: the checks, one read of the control file, and its verdict.

Blocking code, run in a worker thread by ``open_part_file``. The order matters: the
destination, name, size and space checks come before anything is created; the data file is
opened (or created) and ``flock``ed *before* the control file is read, so the one read of it
is not raced by another swarmget process; ``swarmget.core.resume.decide_resume`` judges what
was read, and a restart empties the control file before it truncates the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import warnings
from pathlib import Path
from typing import NamedTuple

from swarmget.core.errors import StorageError
from swarmget.core.ranges import RangeSet
from swarmget.core.resume import Refuse, Resume, ResumeKey, StartFresh, decide_resume
from swarmget.destination import check_destination_at, check_name, storage_error
from swarmget.safe_files import create_exclusive_at, lstat_at, open_directory, open_existing_at
from swarmget.storage.control import control_path_for, part_path_for, read_control, write_control
from swarmget.storage.space import allocate, check_room, check_wanted_size

__all__ = ["Descriptors", "Opened", "close_if_opened", "open_blocking"]


class Opened(NamedTuple):
    dir_fd: int
    fd: int
    verdict: Resume | StartFresh

    @property
    def written(self) -> RangeSet:
        return self.verdict.written if isinstance(self.verdict, Resume) else RangeSet()


def open_blocking(
    dest: Path,
    key: ResumeKey,
    *,
    force: bool,
    preallocate: bool,
    max_size: int | None,
    expected_size: int | None,
    restart_if_changed: bool,
) -> Opened:
    size = key.size if key.size is not None else expected_size
    check_wanted_size(dest, part_path_for(dest), size, max_size)
    try:
        dir_fd = open_directory(dest.parent)
    except OSError as exc:
        raise storage_error("opening", dest.parent, exc) from exc
    try:
        fd, verdict = _open_in(
            dir_fd,
            dest,
            key,
            size,
            force=force,
            preallocate=preallocate,
            restart_if_changed=restart_if_changed,
        )
    except BaseException:
        os.close(dir_fd)
        raise
    return Opened(dir_fd, fd, verdict)


def _open_in(
    dir_fd: int,
    dest: Path,
    key: ResumeKey,
    size: int | None,
    *,
    force: bool,
    preallocate: bool,
    restart_if_changed: bool,
) -> tuple[int, Resume | StartFresh]:
    check_name(dir_fd, dest)
    check_destination_at(dir_fd, dest, force=force)
    part, control = part_path_for(dest), control_path_for(dest)
    if size is not None:
        check_room(dir_fd, part, size)
    fd, created = _open_data(dir_fd, part)
    try:
        stored = read_control(dir_fd, control)  # the one read of the control file
        verdict = decide_resume(
            key,
            stored,
            data_size=os.fstat(fd).st_size,
            dest=dest,
            restart_if_changed=restart_if_changed,
            force=force,
        )
        if isinstance(verdict, Refuse):
            if created:
                _unlink_ours(dir_fd, fd, part)
            raise verdict.error
        if isinstance(verdict, StartFresh):
            _start_over(dir_fd, fd, part, control, key, preallocate=preallocate)
        return fd, verdict
    except BaseException:
        os.close(fd)
        raise


def _open_data(dir_fd: int, path: Path) -> tuple[int, bool]:
    """Open the trusted data file, or create it anew (then True), and lock it against other
    swarmget processes. Never through a link; ``UntrustedFile`` for anything but our own."""
    try:
        fd, created = _open_or_create(dir_fd, path)
    except OSError as exc:
        raise storage_error("opening", path, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StorageError(f"{path} is being written by another swarmget process") from exc
    except OSError:
        pass  # no locking on this file system (ENOLCK): carry on unlocked
    return fd, created


def _open_or_create(dir_fd: int, path: Path) -> tuple[int, bool]:
    for _attempt in range(3):
        fd = open_existing_at(dir_fd, path.name, os.O_RDWR, path)
        if fd is not None:
            return fd, False
        with contextlib.suppress(FileExistsError):  # appeared meanwhile: look at it again
            return create_exclusive_at(dir_fd, path.name, os.O_RDWR), True
    raise StorageError(f"{path} keeps appearing and disappearing; is something else at work?")


def _unlink_ours(dir_fd: int, fd: int, path: Path) -> None:
    """Remove the empty data file this open created, if its name still holds it."""
    with contextlib.suppress(OSError):
        st, now = os.fstat(fd), lstat_at(dir_fd, path.name)
        if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            os.unlink(path.name, dir_fd=dir_fd)


def _start_over(
    dir_fd: int, fd: int, part: Path, control: Path, key: ResumeKey, *, preallocate: bool
) -> None:
    """Drop old data. The control file is emptied (or removed) before the data is touched."""
    try:
        if key.size is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control.name, dir_fd=dir_fd)
        else:
            write_control(dir_fd, control, key, RangeSet())
        os.ftruncate(fd, 0)
    except OSError as exc:
        raise storage_error("resetting", part, exc) from exc
    if key.size is not None:
        allocate(fd, part, key.size, preallocate=preallocate)


class Descriptors:
    """Owns an open's two descriptors (the data file, its directory) until they are closed;
    one left open when the object goes away is closed with a ``ResourceWarning``."""

    def __init__(self, opened: Opened, part: Path) -> None:
        self._fd = opened.fd
        self._dir_fd = opened.dir_fd
        self._part_name = part

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _close_dir(self) -> None:
        if self._dir_fd >= 0:
            fd, self._dir_fd = self._dir_fd, -1
            os.close(fd)

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed PartFile {self._part_name}", ResourceWarning, stacklevel=1)
            self._close_fd()
        if getattr(self, "_dir_fd", -1) >= 0:
            self._close_dir()


def close_if_opened(fut: asyncio.Future[Opened]) -> None:
    """Done-callback for an open whose caller was cancelled: do not leak the descriptors."""
    if not fut.cancelled() and fut.exception() is None:
        os.close(fut.result().fd)
        os.close(fut.result().dir_fd)
