"""Opening files next to a download like network input is parsed: nothing is trusted.

Every name is opened relative to a descriptor of its directory (``dir_fd``), so that a
directory renamed or swapped for a link meanwhile cannot redirect a later call. Nothing
is ever opened through a symbolic link (``O_NOFOLLOW``); a new file is created with
``O_EXCL`` (so an existing name, link or not, is never written through) and mode 0600.

An existing file is *trusted* (resumed from, written into) only when it is a regular file
of this user (the effective uid), writable by no one else (no group or other write bit)
and with no other hard link (a link to one of our own files elsewhere, e.g. ``~/.bashrc``,
must not be truncated). ``untrusted_reason`` says what is wrong with one that is not.

Blocking calls only: run them in a worker thread from async code.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from swarmget.core.errors import UntrustedFile

__all__ = [
    "create_exclusive_at",
    "free_bytes",
    "fsync_dir",
    "kind_of",
    "lstat_at",
    "open_directory",
    "open_existing_at",
    "published_mode",
    "read_trusted_at",
    "require_trusted",
    "untrusted_reason",
]

_NO_FOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO never blocks
_PRIVATE_MODE = 0o600
_PUBLISHED_MODE = 0o644  # a finished download: this user's, readable by all, minus the umask
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISREG, "a regular file"),
)


def open_directory(path: os.PathLike[str] | str) -> int:
    """A descriptor of the directory ``path`` (OSError if it is none)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """What is at ``name`` itself (a link is not followed); None if nothing is."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def kind_of(st: os.stat_result) -> str:
    """ "a regular file", "a symbolic link", "a character device" ... for messages."""
    return next((kind for test, kind in _KINDS if test(st.st_mode)), "a special file")


def untrusted_reason(st: os.stat_result) -> str | None:
    """Why the file described by ``st`` must not be trusted; None when it may be."""
    if not stat.S_ISREG(st.st_mode):
        return f"is {kind_of(st)}, not a regular file"
    if st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    if st.st_nlink != 1:
        return f"has {st.st_nlink - 1} other hard link(s)"
    return None


def require_trusted(st: os.stat_result, shown: object) -> None:
    """Raise ``UntrustedFile`` (naming ``shown``) unless ``st`` may be trusted."""
    reason = untrusted_reason(st)
    if reason is not None:
        raise UntrustedFile(
            f"{shown} {reason}: swarmget neither resumes from nor writes into it; "
            "remove it (after a look at it) or choose another destination"
        )


def open_existing_at(dir_fd: int, name: str, flags: int, shown: object) -> int | None:
    """Open the trusted file ``name`` (never through a link); None if there is none.

    ``UntrustedFile`` for anything else at that name; the check is made on the opened
    descriptor, so the file cannot be swapped between the check and the use.
    """
    try:
        fd = os.open(name, flags | _NO_FOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise UntrustedFile(
            f"{shown} is a symbolic link: swarmget never writes through one; "
            "remove it (after a look at it) or choose another destination"
        ) from None
    try:
        require_trusted(os.fstat(fd), shown)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_exclusive_at(dir_fd: int, name: str, flags: int) -> int:
    """Create ``name`` anew (``O_EXCL``, mode 0600): FileExistsError if anything is there."""
    return os.open(name, flags | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, _PRIVATE_MODE, dir_fd=dir_fd)


def read_trusted_at(dir_fd: int, name: str, shown: object, limit: int) -> bytes | None:
    """The content of the trusted file ``name`` (at most ``limit`` bytes; ValueError beyond);
    None if there is none. ``UntrustedFile`` as for ``open_existing_at``."""
    fd = open_existing_at(dir_fd, name, os.O_RDONLY, shown)
    if fd is None:
        return None
    try:
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > limit:
                raise ValueError(f"{shown} is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def free_bytes(dir_fd: int) -> int | None:
    """Bytes this user may still allocate on the directory's file system (None: unknown)."""
    try:
        st = os.fstatvfs(dir_fd)
    except OSError:
        return None
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail  # root may use the reserve
    return blocks * st.f_frsize


def fsync_dir(dir_fd: int) -> None:
    """Make a rename or unlink in the directory durable (where the file system allows)."""
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise


def published_mode() -> int:
    """The mode of a finished download: 0644 minus this process's umask."""
    return _PUBLISHED_MODE & ~_umask()


def _umask() -> int:
    # Linux >= 4.7 shows it; os.umask() would have to set it (racing other threads).
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            match = re.search(r"^Umask:\s*([0-7]+)$", f.read(), re.MULTILINE)
    except OSError:
        match = None
    if match is not None:
        return int(match.group(1), 8)
    old = os.umask(0o077)
    os.umask(old)
    return old
