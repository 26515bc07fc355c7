"""What this node can serve to LAN peers, by content (fetch once per LAN, #15).

docs/fetch-once.md §5–§7. A *holding* is one content this node has (some of) on its own
disk: the full ``ContentKey`` it verified, the file the bytes are in (a path the node chose
itself: a running download's part file, a finished download, a file of its share cache;
never a path from a request) and the ranges it verified, which may grow.

The registry is keyed by ``ContentKey.index_name()``: the peer route
``POST /v1/content-range`` looks the name up, then checks the requested key whole
(``same_content``) and the range against the verified ranges (``swarmget.node.holder``).

Who calls what (the engine side, s15-join, wires the first three):

* a running shareable download: ``register(key, part_path, verified=lambda: written)``
  (a callable, read at each request, so the ranges grow as pieces are verified), or a
  ``RangeSet`` grown with ``add_verified``; ``record_pieces`` for the pieces it fetched from
  the origin itself (served as ``PieceHashes``); ``pinned(name)`` around the download;
  ``update(name, path=final, verified=..., fingerprint=...)`` when the part file becomes
  the final file; ``unregister(name)`` when it is cancelled or the file is not kept.
* the share cache (``swarmget.node.share_cache``) registers what it keeps and unregisters
  what it evicts; it listens to pins and uses through ``HoldingHooks``.
* the holder routes read with ``lookup`` and pin the holding while they stream.

Consent (§7): a file is registered only when it lies in one of the node's own directories
(``roots``: its download and cache directories) unless the user asked to share files saved
elsewhere (``user_asked=True``: ``--share-output``). With sharing disabled (a cache budget
of 0) the registry still records (the engine calls it either way) but ``sharing`` is False:
the routes serve nothing and nothing should be announced.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from swarmget.core.content import ContentKey
from swarmget.core.ranges import ByteRange, RangeSet

__all__ = [
    "Fingerprint",
    "Holding",
    "HoldingHooks",
    "HoldingsRegistry",
    "NotConsented",
    "VerifiedRanges",
]

log = logging.getLogger(__name__)

#: The ranges a holding verified, read when a request comes (a running download's grow).
VerifiedRanges = Callable[[], RangeSet]
#: ``(st_dev, st_ino, st_size, st_mtime_ns)`` of a finished file when it was verified: a
#: file that no longer matches (edited, replaced) is not served.
Fingerprint = tuple[int, int, int, int]


class NotConsented(ValueError):
    """The file lies outside the node's own directories and the user did not ask to share
    files saved elsewhere (``--share-output``): it is not registered."""


def fingerprint_of(st: os.stat_result) -> Fingerprint:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, kw_only=True)
class Holding:
    """A snapshot of one holding (``HoldingsRegistry.lookup``)."""

    name: str
    key: ContentKey
    path: Path
    verified: RangeSet
    #: set for a finished file: it must still be this file (``fingerprint_of``)
    fingerprint: Fingerprint | None = None
    piece_size: int | None = None
    #: piece index -> sha256 hex, of pieces this node fetched from the origin itself
    piece_hashes: Mapping[int, str] = field(default_factory=dict)

    def holds(self, rng: ByteRange) -> bool:
        return self.verified.contains(rng)


class HoldingHooks(Protocol):
    """What the share cache hears from the registry."""

    def pinned(self, name: str) -> None: ...

    def unpinned(self, name: str) -> None:
        """A serve or a download of ``name`` ended: it counts as a use."""


@dataclass
class _Entry:
    key: ContentKey
    path: Path
    verified: VerifiedRanges
    fingerprint: Fingerprint | None = None
    piece_size: int | None = None
    piece_hashes: dict[int, str] = field(default_factory=dict)
    grown: RangeSet | None = None  # set when registered with a RangeSet (add_verified)
    user_asked: bool = False  # --share-output: may lie outside the node's directories


class HoldingsRegistry:
    """The node's holdings by content name; see the module docstring."""

    def __init__(self, roots: Sequence[Path], *, sharing: bool = True) -> None:
        self.roots = tuple(Path(os.path.realpath(root)) for root in roots)
        self.sharing = sharing
        self.hooks: HoldingHooks | None = None
        self._entries: dict[str, _Entry] = {}
        self._pins: dict[str, int] = {}

    def consents(self, path: Path, *, user_asked: bool = False) -> bool:
        """Whether the node may share the file at ``path`` (absolute): it lies in one of
        its own directories (its parent resolved; the file itself is opened without
        following links when served), or the user asked (``--share-output``)."""
        if not path.is_absolute():
            return False
        if user_asked:
            return True
        parent = Path(os.path.realpath(path.parent))
        return any(parent == root or root in parent.parents for root in self.roots)

    def register(
        self,
        key: ContentKey,
        path: Path,
        *,
        verified: RangeSet | VerifiedRanges,
        fingerprint: Fingerprint | None = None,
        user_asked: bool = False,
    ) -> str:
        """Record that ``path`` holds (the ``verified`` ranges of) ``key``; returns its
        name. A ``RangeSet`` is copied and grows with ``add_verified``; a callable is read
        at each request. Registering a name again replaces the holding (its pins stay).
        ``ValueError`` for an unshareable key, ``NotConsented`` for a file the node may not
        share (see ``consents``)."""
        reason = key.not_shareable_reason()
        if reason is not None:
            raise ValueError(f"content not shareable: {reason}")
        if not self.consents(path, user_asked=user_asked):
            raise NotConsented(f"{path} is outside this node's directories")
        name = key.index_name()
        grown: RangeSet | None = None
        if isinstance(verified, RangeSet):
            grown = verified.copy()
            source: VerifiedRanges = grown.copy
        else:
            source = verified
        self._entries[name] = _Entry(
            key=key,
            path=path,
            verified=source,
            fingerprint=fingerprint,
            grown=grown,
            user_asked=user_asked,
        )
        return name

    def add_verified(self, name: str, ranges: RangeSet) -> None:
        """More verified ranges of a holding registered with a ``RangeSet``."""
        entry = self._entries[name]
        if entry.grown is None:
            raise ValueError("this holding reads its ranges from a callable")
        for rng in ranges:
            entry.grown.add(rng)

    def update(
        self,
        name: str,
        *,
        path: Path | None = None,
        verified: RangeSet | VerifiedRanges | None = None,
        fingerprint: Fingerprint | None = None,
    ) -> None:
        """Change a holding's file (the part file became the final file: same consent
        rules), ranges or fingerprint. ``KeyError`` for an unknown name."""
        entry = self._entries[name]
        if path is not None:
            if not self.consents(path, user_asked=entry.user_asked):
                raise NotConsented(f"{path} is outside this node's directories")
            entry.path = path
        if isinstance(verified, RangeSet):
            entry.grown = verified.copy()
            entry.verified = entry.grown.copy
        elif verified is not None:
            entry.grown, entry.verified = None, verified
        if fingerprint is not None:
            entry.fingerprint = fingerprint

    def record_pieces(self, name: str, piece_size: int, hashes: Mapping[int, str]) -> None:
        """Piece hashes (index -> sha256 hex) of pieces this node fetched from the origin
        itself, for ``GET /v1/content/{name}/pieces``. A new ``piece_size`` starts over."""
        entry = self._entries[name]
        if piece_size <= 0:
            raise ValueError("piece_size must be > 0")
        if entry.piece_size != piece_size:
            entry.piece_size, entry.piece_hashes = piece_size, {}
        entry.piece_hashes.update(hashes)

    def unregister(self, name: str) -> None:
        """Stop serving ``name`` (unknown names are ignored). Streams in flight end."""
        self._entries.pop(name, None)

    def lookup(self, name: str) -> Holding | None:
        """A snapshot of the holding (its verified ranges read now), or None."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        return Holding(
            name=name,
            key=entry.key,
            path=entry.path,
            verified=entry.verified(),
            fingerprint=entry.fingerprint,
            piece_size=entry.piece_size,
            piece_hashes=dict(entry.piece_hashes),
        )

    def holds_other_version(self, key: ContentKey) -> bool:
        """Whether a holding is of the same URL as ``key`` but not the same content (another
        validator, size or digest: its name differs, so ``lookup`` does not find it)."""
        return any(
            entry.key.url == key.url and not entry.key.same_content(key)
            for entry in self._entries.values()
        )

    def names(self) -> list[str]:
        return sorted(self._entries)

    def pins(self, name: str) -> int:
        return self._pins.get(name, 0)

    @contextlib.contextmanager
    def pinned(self, name: str) -> Iterator[None]:
        """Keep ``name`` from being evicted while the block runs (a serve, a download).
        Its end counts as a use of the file (``HoldingHooks.unpinned``)."""
        self._pins[name] = self._pins.get(name, 0) + 1
        if self.hooks is not None:
            self.hooks.pinned(name)
        try:
            yield
        finally:
            self._pins[name] -= 1
            if not self._pins[name]:
                del self._pins[name]
            if self.hooks is not None:
                self.hooks.unpinned(name)
