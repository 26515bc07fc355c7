"""The files a test origin serves: generated ones (deterministic pseudo-random bytes made on
demand) and real ones (read from disk), each with versions (a new ETag, a new body)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from swarmget.testing.origin.behaviour import (
    GENERATED_BLOCK,
    GENERATED_MTIME,
    ROTATION,
    VERSION_MTIME_STEP,
    MiB,
)


def generate_content(size: int, seed: int = 0) -> bytes:
    """The deterministic pseudo-random body of a generated file (see ``Pattern``)."""
    return Pattern(size, seed).read(0, size)


class Pattern:
    """Pseudo-random bytes made on demand from one block, so no file is held in memory.

    Up to 1 MiB the body is ``random.Random(seed).randbytes(size)``. Beyond, block ``i`` of
    1 MiB is that first block rotated by a distinct offset: no two blocks are equal, so a
    piece written at the wrong offset shows, yet reading costs no more than a copy.
    """

    def __init__(self, size: int, seed: int) -> None:
        base = random.Random(seed).randbytes(min(size, GENERATED_BLOCK))
        self._twice = base + base
        self._block = max(1, len(base))

    def read(self, start: int, length: int) -> bytes:
        parts = []
        while length > 0:
            i, offset = divmod(start, self._block)
            k = (i * ROTATION) % self._block + offset
            n = min(length, self._block - offset)
            parts.append(self._twice[k : k + n])
            start, length = start + n, length - n
        return b"".join(parts)


@dataclass(frozen=True)
class DiskBody:
    """Version ``v`` of a real file: every byte of the file on disk plus ``v`` (mod 256)."""

    path: Path
    version: int

    def read(self, start: int, length: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(start)
            data = f.read(length)
        if self.version % 256 == 0:
            return data
        return data.translate(bytes((b + self.version) % 256 for b in range(256)))


@dataclass(kw_only=True, eq=False)
class ServedFile:
    """One served file; ``version`` goes up when ``etag_change_after`` strikes."""

    name: str
    size: int
    seed: int = 0  # generated files
    path: Path | None = None  # real files
    mtime: int = GENERATED_MTIME
    content_disposition: str | None = None
    digest: bool = False
    version: int = 0
    _patterns: dict[int, Pattern] = field(default_factory=dict)
    _sha256: dict[int, bytes] = field(default_factory=dict)

    def etag(self, version: int) -> str:
        key = f"{self.name}\0{self.size}\0{self.seed}\0{self.path}\0{self.mtime}\0{version}"
        return '"' + hashlib.sha256(key.encode()).hexdigest()[:24] + '"'

    def last_modified(self, version: int) -> int:
        return self.mtime + version * VERSION_MTIME_STEP

    def body(self, version: int) -> Pattern | DiskBody:
        if self.path is not None:
            return DiskBody(self.path, version)
        if version not in self._patterns:
            self._patterns[version] = Pattern(self.size, self.seed + version)
        return self._patterns[version]

    async def read(self, start: int, length: int, version: int) -> bytes:
        body = self.body(version)
        if isinstance(body, DiskBody):
            return await asyncio.to_thread(body.read, start, length)
        return body.read(start, length)

    async def repr_digest(self, version: int) -> str:
        """The RFC 9530 ``Repr-Digest`` value, hashed in a thread the first time."""
        if version not in self._sha256:
            await asyncio.to_thread(self.sha256, version)
        return f"sha-256=:{base64.b64encode(self._sha256[version]).decode()}:"

    def sha256(self, version: int) -> bytes:
        """Digest of the whole body, cached per version (reads the disk for real files)."""
        if version not in self._sha256:
            h, body = hashlib.sha256(), self.body(version)
            for offset in range(0, self.size, 4 * MiB):
                h.update(body.read(offset, min(4 * MiB, self.size - offset)))
            self._sha256[version] = h.digest()
        return self._sha256[version]
