"""Manifests: a file's size, whole sha256 and the sha256 of every fixed-size piece.

A relay computes the manifest once when it caches a file; a requester checks every piece
against it as the piece lands, so a helper that hands over bad bytes is caught at the first
bad piece, not at the end. ``PieceVerifier`` is the bookkeeping of that check (pure): which
pieces are fully written and not yet checked, which passed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from swarmget.core.ranges import ByteRange, RangeSet

DEFAULT_PIECE_SIZE = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class Manifest:
    size: int
    piece_size: int
    sha256: str
    pieces: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.size < 0 or self.piece_size <= 0:
            raise ValueError("manifest: bad size or piece size")
        if len(self.pieces) != -(-self.size // self.piece_size):
            raise ValueError("manifest: piece count does not match the size")
        if not all(_HEX64.fullmatch(h) for h in (self.sha256, *self.pieces)):
            raise ValueError("manifest: hashes must be 64 lowercase hex digits")

    def piece_range(self, index: int) -> ByteRange:
        start = index * self.piece_size
        return ByteRange(start, min(self.size, start + self.piece_size))

    def pieces_overlapping(self, rng: ByteRange) -> range:
        if rng.is_empty():
            return range(0)
        return range(rng.start // self.piece_size, -(-rng.end // self.piece_size))

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "piece_size": self.piece_size,
            "sha256": self.sha256,
            "pieces": list(self.pieces),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse ``to_json`` output; ValueError for anything malformed."""
        try:
            pieces = data["pieces"]
            if not isinstance(pieces, list):
                raise TypeError("pieces")
            return cls(
                size=int(data["size"]),
                piece_size=int(data["piece_size"]),
                sha256=str(data["sha256"]),
                pieces=tuple(str(p) for p in pieces),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed manifest: {exc}") from exc


class ManifestBuilder:
    """Builds a manifest from the file's bytes fed in order (any chunk sizes)."""

    def __init__(self, piece_size: int = DEFAULT_PIECE_SIZE) -> None:
        self.piece_size = piece_size
        self._whole = hashlib.sha256()
        self._piece = hashlib.sha256()
        self._in_piece = 0
        self._pieces: list[str] = []
        self._size = 0

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self._whole.update(view)
        self._size += len(view)
        while view:
            take = min(len(view), self.piece_size - self._in_piece)
            self._piece.update(view[:take])
            self._in_piece += take
            view = view[take:]
            if self._in_piece == self.piece_size:
                self._close_piece()

    def _close_piece(self) -> None:
        self._pieces.append(self._piece.hexdigest())
        self._piece = hashlib.sha256()
        self._in_piece = 0

    def finish(self) -> Manifest:
        if self._in_piece:
            self._close_piece()
        return Manifest(
            size=self._size,
            piece_size=self.piece_size,
            sha256=self._whole.hexdigest(),
            pieces=tuple(self._pieces),
        )


@dataclass
class PieceVerifier:
    """Which pieces of a manifest are checked, being checked, or waiting for bytes."""

    manifest: Manifest
    ok: set[int] = field(default_factory=set)
    checking: set[int] = field(default_factory=set)
    failures: int = 0

    def ready(self, written: RangeSet) -> list[int]:
        """Pieces fully written that nobody has checked (or is checking) yet."""
        out = []
        for i in range(len(self.manifest.pieces)):
            if i in self.ok or i in self.checking:
                continue
            if written.contains(self.manifest.piece_range(i)):
                out.append(i)
        return out

    def start(self, indices: Iterable[int]) -> None:
        self.checking.update(indices)

    def passed(self, index: int) -> None:
        self.checking.discard(index)
        self.ok.add(index)

    def failed(self, index: int) -> None:
        self.checking.discard(index)
        self.failures += 1

    def all_ok(self) -> bool:
        return len(self.ok) == len(self.manifest.pieces)

    def verified_prefix(self) -> int:
        """Length of the run of checked pieces from offset 0."""
        n = 0
        while n in self.ok:
            n += 1
        return min(self.manifest.size, n * self.manifest.piece_size)

    def expected(self, index: int) -> str:
        return self.manifest.pieces[index]
