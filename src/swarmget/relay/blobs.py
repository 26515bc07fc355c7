"""The relay's blob directory: content-addressed files, who is reading them, and how many may.

A blob is ``blobs/<sha256>`` (0600 in a 0700 directory we own), written once by a finished
fetch and never changed. ``BlobShelf`` opens blobs for the HTTP layer (relative to the
directory, never following a link), counts the responses reading each blob and each client
address (``serving``: eviction skips a blob in use) and refuses a response over the
``ServeLimits`` (``reader_refusal``). Opening and the permission checks block; they are a few
system calls on a local directory.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from swarmget.core.errors import StorageError
from swarmget.core.manifest import Manifest, ManifestBuilder

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "BlobShelf",
    "ReaderLimit",
    "ServeLimits",
    "build_manifest",
    "private_dir",
]

MiB = 1024 * 1024
READ_BLOCK = 4 * MiB
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


@dataclass(frozen=True, kw_only=True)
class ServeLimits:
    """Bounds on the responses that read blobs (unauthenticated: anyone may ask)."""

    readers_per_client: int = 64  # responses in progress per client address
    readers_total: int = 512
    #: seconds a client gets to take each block of ``SEND_BLOCK`` bytes (a minimum rate)
    write_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.readers_per_client < 1 or self.readers_total < 1 or self.write_timeout <= 0:
            raise ValueError("reader limits must be >= 1 and the write timeout > 0")


class ReaderLimit(enum.Enum):
    """Why a blob response is refused: the client's share or the relay's total is in use."""

    PER_CLIENT = "per_client"
    TOTAL = "total"


def build_manifest(path: Path, piece_size: int) -> Manifest:
    """Read ``path`` once; blocking (run it in a thread)."""
    builder = ManifestBuilder(piece_size)
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            builder.feed(block)
    return builder.finish()


def private_dir(path: Path) -> None:
    """Make ``path`` a directory only we can enter (0700); blocking. StorageError if it is
    not a directory or belongs to another user."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StorageError(f"relay cache: {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise StorageError(f"relay cache: {path} belongs to another user (uid {st.st_uid})")
    if stat.S_IMODE(st.st_mode) != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)


def _private_children(path: Path) -> None:
    """Make every regular file directly in ``path`` 0600 (blobs of older versions); links
    and others are left alone (they are never served: blobs are opened with O_NOFOLLOW)."""
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in os.listdir(dir_fd):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != PRIVATE_FILE:
                    os.fchmod(fd, PRIVATE_FILE)
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)


class BlobShelf:
    """The blob directory and the responses reading it (see the module doc)."""

    def __init__(self, directory: Path, limits: ServeLimits) -> None:
        self.directory = directory
        self.limits = limits
        self._serving: collections.Counter[str] = collections.Counter()  # sha256 -> readers
        self._readers: collections.Counter[str] = collections.Counter()  # client -> readers
        private_dir(directory)
        _private_children(directory)

    def path(self, sha256: str) -> Path:
        return self.directory / sha256

    def in_use(self, sha256: str) -> bool:
        """True while a response reads blob ``sha256``."""
        return self._serving[sha256] > 0

    def readers(self) -> int:
        """Responses reading blobs now."""
        return sum(self._readers.values())

    def reader_refusal(self, client: str) -> ReaderLimit | None:
        """The ``ReaderLimit`` that refuses one more response reading a blob, if any."""
        if self._readers[client] >= self.limits.readers_per_client:
            return ReaderLimit.PER_CLIENT
        if self.readers() >= self.limits.readers_total:
            return ReaderLimit.TOTAL
        return None

    @contextlib.contextmanager
    def serving(self, sha256: str, client: str = "") -> Iterator[None]:
        """Mark a blob in use while a response sends it (eviction skips it)."""
        self._serving[sha256] += 1
        self._readers[client] += 1
        try:
            yield
        finally:
            for counter, key in ((self._serving, sha256), (self._readers, client)):
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]

    def open(self, sha256: str) -> tuple[int, os.stat_result] | None:
        """An open descriptor of blob ``sha256`` and its status, or None if there is no such
        regular file (a link is not followed). Three system calls on a local directory; the
        name must already be checked (64 hex digits)."""
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open(sha256, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP):
                return None
            raise
        finally:
            os.close(dir_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None
        return fd, st
