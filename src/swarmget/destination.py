"""Where a download may end up, whether it fits there, and how it gets there.

This module is the one home of the destination rules; every caller (the engine, the CLI,
a node's user API and web portal) asks it rather than checking on its own:

* ``resolve_output``: ``-o`` names the file, or a directory the file goes into under the
  name the server chose (``OriginInfo.filename``, already sanitized by
  ``swarmget.core.filenames``); no ``-o`` is that name in the current directory.
  ``destination_for`` is that plus ``check_destination`` and ``check_size``.
* ``inside_download_dir`` / ``relative_to_download_dir``: a node writes only inside its
  download directory (``DestinationOutside`` otherwise: an absolute path, ``..``, a link
  out of it, or the directory itself).

The rules, checked before anything is created (blocking calls: run them in a worker thread
from async code, or accept a short stall as ``Download`` does before it starts):

* ``check_destination``: nothing at ``DEST``, or with ``force`` a regular file or a symbolic
  link (the link is replaced, never its target); never a directory, a device, a FIFO or a
  socket, ``force`` or not.
* ``check_size``: not more than the caller's ``max_size`` (``FileTooLarge``);
  ``check_space``: not more than the file system can hold, its free space plus what the data
  file already holds, and less than 2^63 bytes (``InsufficientStorage``).
* ``check_name``: ``DEST.part.json.tmp``, the longest name used next to ``DEST``, fits in
  the file system's NAME_MAX (``InvalidDestination``).
* ``publish``: the finished data file becomes ``DEST`` by one rename in the directory (by
  descriptor), only if the data file's name still holds the inode that was written, and
  without replacing anything unless ``force`` (``link(2)`` fails atomically with EEXIST).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from swarmget.core.errors import (
    DestinationExists,
    DestinationOutside,
    FileTooLarge,
    InsufficientStorage,
    InvalidDestination,
    StorageError,
    UntrustedFile,
)
from swarmget.core.filenames import NAME_MAX, WORK_SUFFIX
from swarmget.safe_files import free_bytes, fsync_dir, kind_of, lstat_at, open_directory

__all__ = [
    "MAX_FILE_SIZE",
    "Output",
    "check_destination",
    "check_destination_at",
    "check_name",
    "check_size",
    "check_space",
    "destination_exists",
    "destination_for",
    "inside_download_dir",
    "no_space_error",
    "publish",
    "relative_to_download_dir",
    "resolve_output",
    "storage_error",
    "too_large_for_system",
]

MAX_FILE_SIZE = 2**63 - 1  # off_t: no file on any file system can be larger

_REASONS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "I/O error",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large for this file system",
}


def storage_error(doing: str, path: Path, exc: OSError, *, kept: bool = False) -> StorageError:
    reason = _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
    tail = "; the partial download is kept for resuming" if kept else ""
    return StorageError(f"{reason} while {doing} {path}{tail}")


def no_space_error(path: Path, size: int, free: int | None) -> InsufficientStorage:
    have = "unknown" if free is None else str(free)
    return InsufficientStorage(
        f"not enough disk space for {path} (need {size} bytes, {have} available); "
        "free some space and run again"
    )


def too_large_for_system(path: Path, size: int) -> InsufficientStorage:
    return InsufficientStorage(
        f"{path} would be {size} bytes: larger than a file can be on this system"
    )


def check_size(dest: Path, size: int | None, max_size: int | None) -> None:
    """``FileTooLarge`` when a ``size``-byte download to ``dest`` exceeds ``max_size``."""
    if size is not None and max_size is not None and size > max_size:
        raise FileTooLarge(
            f"{dest.name} is {size} bytes, more than the limit of {max_size} bytes "
            "(--max-size); nothing was written"
        )


def check_space(dir_fd: int, part: Path, size: int, reusable: int) -> None:
    """Refuse, before a byte is written, a size the file system cannot hold. ``reusable``
    are the bytes an existing data file already holds (a restart frees them)."""
    if size > MAX_FILE_SIZE:
        raise too_large_for_system(part, size)
    free = free_bytes(dir_fd)
    if free is not None and size > free + reusable:
        raise no_space_error(part, size, free)


def check_name(dir_fd: int, dest: Path) -> None:
    """``InvalidDestination`` unless the longest name we use next to ``dest`` fits."""
    longest = dest.name + WORK_SUFFIX
    try:
        limit = os.fpathconf(dir_fd, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = NAME_MAX
    if len(os.fsencode(longest)) > limit:
        raise InvalidDestination(
            f"the name {dest.name!r} is too long: {longest!r} must fit in {limit} bytes "
            "on this file system; choose a shorter name"
        )


def check_destination(dest: Path, *, force: bool, replace_link: bool = True) -> None:
    """Raise ``DestinationExists`` unless a download may end at ``dest`` (blocking).

    Nothing there is fine; a directory never is; anything else only with ``force``, and
    then only a regular file or a symbolic link (the link itself is replaced, never its
    target), the latter only if ``replace_link`` (the user named it; a name the server
    chose never replaces a link): a device, a FIFO or a socket is never replaced.
    """
    try:
        dir_fd = open_directory(dest.parent)
    except OSError:
        return  # opening the part file reports it
    try:
        check_destination_at(dir_fd, dest, force=force, replace_link=replace_link)
    finally:
        os.close(dir_fd)


def check_destination_at(
    dir_fd: int, dest: Path, *, force: bool, replace_link: bool = True
) -> None:
    try:
        st = lstat_at(dir_fd, dest.name)
    except OSError as exc:
        raise storage_error("looking at", dest, exc) from exc
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise DestinationExists(f"{dest} is a directory")
    if not force:
        raise destination_exists(dest)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise DestinationExists(
            f"{dest} is {kind_of(st)}: swarmget replaces only a regular file (or a symbolic "
            "link, not its target), even with --force"
        )
    if stat.S_ISLNK(st.st_mode) and not replace_link:
        raise DestinationExists(
            f"{dest} is a symbolic link and the server chose this name: name the file "
            "yourself (-o) to replace the link"
        )


def publish(
    dir_fd: int, identity: tuple[int, int], part: Path, control: Path, dest: Path, *, force: bool
) -> None:
    """Rename the finished data file to ``dest`` (no-clobber unless ``force``), drop control.

    ``identity`` (device, inode) is the file we wrote: if something else is at the data
    file's name now, nothing is renamed (``UntrustedFile``).
    """
    now = lstat_at(dir_fd, part.name)
    if now is None or (now.st_dev, now.st_ino) != identity or not stat.S_ISREG(now.st_mode):
        raise UntrustedFile(f"{part} was replaced while swarmget wrote it; nothing was renamed")
    if force:
        check_destination_at(dir_fd, dest, force=True)
        os.replace(part.name, dest.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    else:
        rename_noreplace(dir_fd, part, dest)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(control.name, dir_fd=dir_fd)
    fsync_dir(dir_fd)


def rename_noreplace(dir_fd: int, part: Path, dest: Path) -> None:
    # link(2) fails atomically with EEXIST (a dangling link included), unlike an exists()
    # check followed by rename(2).
    try:
        os.link(part.name, dest.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError as exc:
        raise destination_exists(dest) from exc
    except OSError:  # no hard links here (FAT, some FUSE): check, then rename
        if lstat_at(dir_fd, dest.name) is not None:
            raise destination_exists(dest) from None
        os.replace(part.name, dest.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    os.unlink(part.name, dir_fd=dir_fd)


def destination_exists(dest: Path) -> DestinationExists:
    """The one ``DestinationExists`` for something at ``dest`` that ``force`` would replace."""
    return DestinationExists(f"{dest} already exists (use --force to overwrite)")


# --- where the file goes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    """Where a download ends: ``path``, and whether the user named the file itself (then
    ``force`` may replace a symbolic link there; a name the server chose never does)."""

    path: Path
    named_by_user: bool


def resolve_output(output: Path | None, filename: str, *, cwd: Path | None = None) -> Output:
    """``output`` (a file, or a directory to put ``filename`` in) or ``filename`` in ``cwd``
    (default: the current directory). Looks at the file system: is ``output`` a directory?"""
    if output is None:
        return Output((Path.cwd() if cwd is None else cwd) / filename, named_by_user=False)
    if output.is_dir():
        return Output(output / filename, named_by_user=False)
    return Output(output, named_by_user=True)


def destination_for(
    output: Path | None,
    filename: str,
    *,
    force: bool,
    size: int | None,
    max_size: int | None,
    cwd: Path | None = None,
) -> Path:
    """``resolve_output``, then the checks a download makes before it starts:
    ``check_destination`` (``DestinationExists``) and ``check_size`` (``FileTooLarge``)."""
    out = resolve_output(output, filename, cwd=cwd)
    check_destination(out.path, force=force, replace_link=out.named_by_user)
    check_size(out.path, size, max_size)
    return out.path


def inside_download_dir(download_dir: Path, requested: str | None) -> Path:
    """A node's download's output inside ``download_dir``; ``DestinationOutside`` for escapes.

    ``requested`` is a relative path (a file name or ``sub/dir/name``) or None (the name
    comes from the server: the directory itself is returned). Absolute paths, ``..``, NUL
    and symlinks out of the directory are refused.
    """
    base = download_dir.resolve()
    if not requested:
        return base
    candidate = Path(requested)
    if candidate.is_absolute() or ".." in candidate.parts or "\x00" in requested:
        raise DestinationOutside(f"destination {requested!r} is outside the download directory")
    resolved = (base / candidate).resolve()
    if not _strictly_inside(resolved, base):
        raise DestinationOutside(f"destination {requested!r} is outside the download directory")
    return resolved


def relative_to_download_dir(download_dir: Path, output: Path) -> str:
    """``output`` as a node's user API wants it: relative to ``download_dir``;
    ``DestinationOutside`` when it lies outside (a node writes only into its directory)."""
    resolved, base = output.resolve(), download_dir.resolve()
    if not _strictly_inside(resolved, base):
        raise DestinationOutside(f"the node saves into {base}; {output} is outside it")
    return str(resolved.relative_to(base))


def _strictly_inside(path: Path, base: Path) -> bool:
    return path.is_relative_to(base) and path != base
