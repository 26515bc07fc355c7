"""Hashing files, and the growing prefix of a file being downloaded, off the event loop.

Reads are ``os.pread`` on a descriptor of our own, in blocks of ``HASH_BLOCK`` in a worker
thread; ``hashlib`` releases the GIL while it digests buffers of 2 KiB or more, so hashing runs
beside the event loop rather than in turn with it. A cancelled call stops its thread after the
block in hand.

``IncrementalHasher`` follows ``PartFile.written_prefix()``: the downloader calls ``advance``
as the contiguous prefix grows and ``finish`` when the last byte lands, so that only the tail
is left to hash at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Protocol

from swarmget.core.errors import StorageError

__all__ = ["HASH_BLOCK", "INCREMENTAL_BATCH", "IncrementalHasher", "hash_file"]

MiB = 1024 * 1024
HASH_BLOCK = 4 * MiB  # bytes read and digested per pread
INCREMENTAL_BATCH = 1 * MiB  # IncrementalHasher.advance waits until this much is pending

StrPath = str | os.PathLike[str]


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


def _new_hashers(algorithms: Iterable[str]) -> dict[str, _Hasher]:
    """One fresh hash object per distinct name; ValueError for unknown or variable-length."""
    names = list(dict.fromkeys(algorithms))
    if not names:
        raise ValueError("no hash algorithm given")
    hashers: dict[str, _Hasher] = {}
    for name in names:
        if name.lower().startswith("shake"):
            raise ValueError(f"variable-length hash {name!r} is not supported")
        try:
            hashers[name] = hashlib.new(name, usedforsecurity=False)
        except ValueError as exc:
            raise ValueError(f"unknown hash algorithm {name!r}") from exc
    return hashers


def _open_for_reading(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"cannot open {path} for hashing: {exc.strerror}") from exc


def _hash_block(fd: int, hashers: dict[str, _Hasher], offset: int, end: int, path: Path) -> int:
    """Digest up to ``HASH_BLOCK`` bytes of ``[offset, end)``; return how many were read."""
    try:
        block = os.pread(fd, min(HASH_BLOCK, end - offset), offset)
    except OSError as exc:
        raise StorageError(f"cannot read {path} for hashing: {exc.strerror}") from exc
    if not block:
        raise StorageError(f"{path} ends at byte {offset}, expected at least {end} bytes")
    for hasher in hashers.values():
        hasher.update(block)
    return len(block)


def _hash_range_blocking(
    path: Path, hashers: dict[str, _Hasher], start: int, end: int | None, stop: threading.Event
) -> dict[str, str]:
    fd = _open_for_reading(path)
    try:
        offset, end = start, os.fstat(fd).st_size if end is None else end
        while offset < end and not stop.is_set():
            offset += _hash_block(fd, hashers, offset, end, path)
    finally:
        os.close(fd)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


async def hash_file(
    path: StrPath, algorithms: Iterable[str], *, start: int = 0, end: int | None = None
) -> dict[str, str]:
    """Hex digests of bytes ``[start, end)`` of ``path`` (``end=None``: to the end of file).

    Keys are the algorithm names as given (``hashlib`` names). ValueError for an unknown
    algorithm or a bad range; StorageError if the file cannot be read or is shorter than
    ``end``.
    """
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid range [{start}, {end})")
    hashers = _new_hashers(algorithms)
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_hash_range_blocking, Path(path), hashers, start, end, stop)
    finally:
        stop.set()  # cancelled: let the thread give up after its current block


class IncrementalHasher:
    """Hashes the contiguous prefix ``[0, hashed)`` of a file that is still being written.

    The caller promises that bytes below every ``upto`` it passes are final (for a
    ``PartFile``: ``upto <= written_prefix()``). The hasher reads through its own descriptor,
    opened on first use, so it keeps working after the file is renamed. Close it with
    ``aclose()`` or ``async with``. Calls are serialized; cancelling one leaves a consistent
    state (``hashed`` always matches the digests).
    """

    def __init__(
        self, path: StrPath, algorithms: Iterable[str], *, batch: int = INCREMENTAL_BATCH
    ) -> None:
        if batch <= 0:
            raise ValueError(f"batch must be positive, not {batch}")
        self.path = Path(path)
        self._hashers = _new_hashers(algorithms)
        self._batch = batch
        self._hashed = 0
        self._fd = -1
        self._closed = False
        # Held by the worker thread while it touches _fd, _hashers or _hashed.
        self._lock = threading.Lock()

    @property
    def hashed(self) -> int:
        """Length of the prefix digested so far."""
        return self._hashed

    async def advance(self, upto: int) -> int:
        """Hash ``[hashed, upto)`` if at least ``batch`` bytes are pending; return ``hashed``."""
        if upto - self._hashed < self._batch:
            return self._hashed
        return await self._hash_to(upto)

    async def finish(self, size: int) -> dict[str, str]:
        """Hash whatever is left of ``[0, size)`` and return the hex digests of it."""
        await self._hash_to(size)
        return self.hexdigests()

    def hexdigests(self) -> dict[str, str]:
        """Digests of ``[0, hashed)``. RuntimeError while a worker thread is still hashing."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("hashing is in progress")
        try:
            return {name: hasher.hexdigest() for name, hasher in self._hashers.items()}
        finally:
            self._lock.release()

    async def aclose(self) -> None:
        """Close the descriptor (after any hashing still running in a thread). Idempotent."""
        await asyncio.to_thread(self._close_blocking)

    async def __aenter__(self) -> IncrementalHasher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed IncrementalHasher {self.path}", ResourceWarning, stacklevel=1)
            os.close(self._fd)

    async def _hash_to(self, upto: int) -> int:
        stop = threading.Event()
        try:
            await asyncio.to_thread(self._hash_to_blocking, upto, stop)
        finally:
            stop.set()
        return self._hashed

    def _hash_to_blocking(self, upto: int, stop: threading.Event) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"IncrementalHasher for {self.path} is closed")
            if self._fd < 0:
                self._fd = _open_for_reading(self.path)
            while self._hashed < upto and not stop.is_set():
                self._hashed += _hash_block(self._fd, self._hashers, self._hashed, upto, self.path)

    def _close_blocking(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)
