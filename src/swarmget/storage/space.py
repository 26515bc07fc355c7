"""Room for the data file: the checks before anything is created, and the preallocation.

The rules themselves (``check_size``, ``check_space``, ``MAX_FILE_SIZE``) live in
``swarmget.destination``; this module applies them to the data file.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from swarmget.destination import (
    MAX_FILE_SIZE,
    check_size,
    check_space,
    no_space_error,
    storage_error,
    too_large_for_system,
)
from swarmget.safe_files import lstat_at, require_trusted

__all__ = ["allocate", "check_room", "check_wanted_size"]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_FALLOCATE_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


def check_wanted_size(dest: Path, part: Path, size: int | None, max_size: int | None) -> None:
    """``FileTooLarge`` over ``max_size``, ``InsufficientStorage`` over what any file can be."""
    check_size(dest, size, max_size)
    if size is not None and size > MAX_FILE_SIZE:
        raise too_large_for_system(part, size)


def check_room(dir_fd: int, part: Path, size: int) -> None:
    """``InsufficientStorage`` unless the file system holds ``size`` bytes, counting what an
    existing (trusted) data file already holds; ``UntrustedFile`` for a stranger's one."""
    try:
        existing = lstat_at(dir_fd, part.name)
    except OSError as exc:
        raise storage_error("opening", part, exc) from exc
    if existing is not None:
        require_trusted(existing, part)
    held = existing.st_blocks * 512 if existing is not None else 0
    check_space(dir_fd, part, size, held)


def allocate(fd: int, path: Path, size: int, *, preallocate: bool) -> None:
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
