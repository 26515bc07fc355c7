"""The node's share cache: finished downloads kept for the group within ``--cache-budget``.

docs/fetch-once.md §7. The policy (LRU within the budget, pins) is ``core.share_cache``;
this is the thin adapter around it: it registers what it keeps with the node's
``HoldingsRegistry``, hears pins and uses from it (``HoldingHooks``), withdraws and removes
what the policy evicts, and persists its index across restarts.

* ``keep(key, path)``: a finished download (its file checked now: regular, this user's,
  not a link; fingerprinted) is kept and served. A completed download counts as a use.
  Files in ``cache_dir`` (``cache_path(key)``: named by the content's index name) belong to
  the cache and are deleted when evicted; any other file (a finished download in the
  download directory) is only *withdrawn* on eviction: the user's file stays.
* eviction (``enforce``): the registry forgets the holding first, then ``on_evict(name)``
  is called (the hub announcer withdraws the holding there), then an owned file is removed
  and the index saved. Pinned holdings (being served or downloaded) are never evicted.
* the index (``STATE_NAME`` in the state directory, 0600, replaced atomically) is read back
  at start. An index that is unreadable, oversized or not ours is ignored (one log line);
  each entry is checked again: its key and name, the file inside the node's directories,
  opened without following links, this user's regular file, the same file as when kept
  (fingerprint). An entry that fails is dropped with a log line; files in ``cache_dir``
  the index does not list are left alone, never served.
* a budget of 0 disables sharing: the registry's ``sharing`` is False, nothing is kept.

Blocking file calls are small (an ``fstat``, an ``unlink``, a JSON file of the entries).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarmget.core.content import ContentKey
from swarmget.core.errors import UntrustedFile
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.share_cache import SharePolicy
from swarmget.node.holdings import Fingerprint, HoldingsRegistry, NotConsented, fingerprint_of
from swarmget.node.statefiles import write_private
from swarmget.protocol.content import MAX_PIECE_HASHES, ContentKeyModel, is_index_name
from swarmget.safe_files import lstat_at, open_directory, open_existing_at, read_trusted_at

__all__ = [
    "CACHE_DIR",
    "MAX_INDEX_BYTES",
    "STATE_NAME",
    "ShareCache",
]

log = logging.getLogger(__name__)

STATE_NAME = "share-cache.json"
CACHE_DIR = "share-cache"
#: The most entries and bytes of the index file read back.
MAX_ENTRIES = 4096
MAX_INDEX_BYTES = 64 * 1024 * 1024
#: A use (a serve ending) is written to the index at most this often (seconds; and at
#: ``close``): a crash forgets at most that much recency, never a kept file.
SAVE_INTERVAL = 30.0


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=64)
    key: ContentKeyModel
    path: str = Field(max_length=4096)
    fingerprint: tuple[int, int, int, int]
    last_used: float
    owned: bool = False
    piece_size: int | None = Field(default=None, gt=0)
    piece_hashes: list[tuple[int, str]] = Field(default_factory=list, max_length=MAX_PIECE_HASHES)
    #: saved outside the node's directories, shared because the user asked (``get
    #: --share-output``): restored only while the node still allows it
    user_asked: bool = False


class _Index(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    entries: list[_Entry] = Field(default_factory=list, max_length=MAX_ENTRIES)


class ShareCache:
    """Kept files, the budget and the index; see the module docstring."""

    def __init__(
        self,
        state_dir: Path,
        registry: HoldingsRegistry,
        policy: SharePolicy,
        *,
        clock: Callable[[], float] = time.time,
        on_evict: Callable[[str], None] | None = None,
        outputs: bool = False,
    ) -> None:
        self.state_dir = state_dir
        #: files saved outside the node's directories that the user asked to share may be
        #: kept (``swarmget node --share-output``); without it they are refused, and those
        #: an earlier run kept are dropped from the index at start
        self.outputs = outputs
        self.cache_dir = state_dir / CACHE_DIR
        self.registry = registry
        self.policy = policy
        self.on_evict = on_evict
        self.evicted = 0  # swarmget_share_evictions_total
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._saved_at = float("-inf")
        self._dirty = False
        registry.sharing = policy.sharing
        registry.hooks = self

    # --- what the node and the engine call ------------------------------------------------

    def cache_path(self, key: ContentKey) -> Path:
        """Where a file the cache owns (deleted on eviction) is put: named by the content."""
        return self.cache_dir / key.index_name()

    def keep(
        self,
        key: ContentKey,
        path: Path,
        *,
        piece_size: int | None = None,
        piece_hashes: Mapping[int, str] | None = None,
        user_asked: bool = False,
    ) -> bool:
        """Keep the finished file ``path`` of ``key`` for the group (a use of it). False
        when it is not kept: sharing disabled, the key unshareable, the file refused
        (outside the node's directories without ``user_asked``, a link, not ours, of the
        wrong size) or over the budget by itself. Never raises for those."""
        if not self.policy.sharing or not key.shareable or key.size is None:
            return False
        user_asked = user_asked and self.outputs
        fingerprint = self._fingerprint(path)
        if fingerprint is None or fingerprint[2] != key.size:
            return False
        try:
            name = self.registry.register(
                key,
                path,
                verified=RangeSet([ByteRange(0, key.size)]),
                fingerprint=fingerprint,
                user_asked=user_asked,
            )
        except (NotConsented, ValueError) as exc:
            log.info("not keeping %s for the group: %s", path, exc)
            return False
        if piece_size is not None and piece_hashes:
            self.registry.record_pieces(name, piece_size, piece_hashes)
        owned = path == self.cache_path(key)
        self._entries[name] = _Entry(
            name=name,
            key=ContentKeyModel.of(key),
            path=str(path),
            fingerprint=fingerprint,
            last_used=self._clock(),
            owned=owned,
            piece_size=piece_size,
            piece_hashes=sorted((piece_hashes or {}).items()),
            user_asked=user_asked and not self.registry.consents(path),
        )
        # streams that pinned the holding before it was kept keep it pinned
        self.policy.add(name, key.size, self._clock(), pins=self.registry.pins(name))
        self.enforce()
        self.save()
        return name in self._entries

    def keeps(self, name: str) -> bool:
        """Whether the cache keeps content ``name`` (whole, under its budget)."""
        return name in self._entries

    def names(self) -> list[str]:
        """The kept contents, most recently used first."""
        return [e.name for e in reversed(self.policy.entries())]

    def size_of(self, name: str) -> int | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.fingerprint[2]

    def enforce(self) -> list[str]:
        """Evict what the policy says (least recently used, never pinned); the names."""
        evicted = self.policy.evictions()
        for name in evicted:
            self._evict(name)
        if evicted:
            self.save()
        return evicted

    def kept_bytes(self) -> int:
        """swarmget_share_cache_bytes."""
        return self.policy.total()

    # --- HoldingHooks ---------------------------------------------------------------------

    def pinned(self, name: str) -> None:
        self.policy.pin(name)

    def unpinned(self, name: str) -> None:
        self.policy.unpin(name)
        if name in self._entries:
            now = self._clock()
            self.policy.touch(name, now)
            self._entries[name] = self._entries[name].model_copy(update={"last_used": now})
            if not self.enforce():
                self._save_soon(now)

    # --- persistence ----------------------------------------------------------------------

    def load(self) -> None:
        """Read the index back (see the module docstring) and register what passes."""
        self.cache_dir.mkdir(mode=0o700, exist_ok=True)
        index = self._read_index()
        listed: set[str] = set()
        for entry in index.entries if index is not None else []:
            listed.add(entry.name)
            reason = self._restore(entry)
            if reason is not None:
                log.warning("share cache: dropping %s from the index: %s", entry.name, reason)
        self._note_strangers(listed)
        if self.enforce() or index is not None:
            self.save()

    def save(self) -> None:
        index = _Index(entries=list(self._entries.values()))
        write_private(self.state_dir / STATE_NAME, index.model_dump_json().encode())
        self._saved_at, self._dirty = self._clock(), False

    def close(self) -> None:
        """Write the uses not saved yet (the node stops)."""
        if self._dirty:
            self.save()

    def _save_soon(self, now: float) -> None:
        if now - self._saved_at >= SAVE_INTERVAL:
            self.save()
        else:
            self._dirty = True

    def _read_index(self) -> _Index | None:
        try:
            dir_fd = open_directory(self.state_dir)
        except OSError:
            return None
        try:
            raw = read_trusted_at(dir_fd, STATE_NAME, self.state_dir / STATE_NAME, MAX_INDEX_BYTES)
            return None if raw is None else _Index.model_validate_json(raw)
        except (UntrustedFile, ValidationError, ValueError, OSError) as exc:
            log.warning("share cache: ignoring its index %s: %s", STATE_NAME, _short(exc))
            return None
        finally:
            os.close(dir_fd)

    def _restore(self, entry: _Entry) -> str | None:
        """Register ``entry`` again; why not, or None."""
        try:
            key = entry.key.key()
        except ValueError as exc:
            return f"a bad key: {exc}"
        if not is_index_name(entry.name) or key.index_name() != entry.name:
            return "its name is not its key's"
        path = Path(entry.path)
        if entry.owned and path != self.cache_path(key):
            return "an owned file outside the cache directory"
        asked = entry.user_asked and self.outputs and not entry.owned
        if not self.registry.consents(path, user_asked=asked):
            return "a file outside this node's directories"
        if self._fingerprint(path) != entry.fingerprint or entry.fingerprint[2] != key.size:
            return "the file is gone, changed, or not this user's regular file"
        whole = RangeSet([ByteRange(0, entry.fingerprint[2])])
        self.registry.register(
            key, path, verified=whole, fingerprint=entry.fingerprint, user_asked=asked
        )
        if entry.piece_size is not None and entry.piece_hashes:
            self.registry.record_pieces(entry.name, entry.piece_size, dict(entry.piece_hashes))
        self._entries[entry.name] = entry
        self.policy.add(entry.name, entry.fingerprint[2], entry.last_used)
        return None

    def _note_strangers(self, listed: set[str]) -> None:
        try:
            names = os.listdir(self.cache_dir)
        except OSError:
            return
        for name in sorted(set(names) - listed)[:100]:
            log.warning("share cache: ignoring %s in %s (not in its index)", name, self.cache_dir)

    def _fingerprint(self, path: Path) -> Fingerprint | None:
        """The fingerprint of this user's regular file at ``path`` (no link followed);
        None for anything else."""
        try:
            dir_fd = open_directory(path.parent)
        except OSError:
            return None
        try:
            fd = open_existing_at(dir_fd, path.name, os.O_RDONLY, path)
        except (UntrustedFile, OSError) as exc:
            log.warning("share cache: not using %s: %s", path, _short(exc))
            return None
        finally:
            os.close(dir_fd)
        if fd is None:
            return None
        try:
            return fingerprint_of(os.fstat(fd))
        finally:
            os.close(fd)

    def _evict(self, name: str) -> None:
        self.registry.unregister(name)  # no new stream from here on
        if self.on_evict is not None:
            self.on_evict(name)
        entry = self._entries.pop(name, None)
        self.policy.remove(name)
        self.evicted += 1
        if entry is not None and entry.owned:
            self._remove_owned(Path(entry.path), entry.fingerprint)
        log.info("share cache: evicted %s", name)

    def _remove_owned(self, path: Path, fingerprint: Fingerprint) -> None:
        """Delete a cache file, if its name still holds the file that was kept."""
        try:
            dir_fd = open_directory(path.parent)
        except OSError:
            return
        try:
            st = lstat_at(dir_fd, path.name)
            if st is not None and fingerprint_of(st)[:2] == fingerprint[:2]:
                os.unlink(path.name, dir_fd=dir_fd)
        except OSError as exc:
            log.warning("share cache: could not remove %s: %s", path, exc)
        finally:
            os.close(dir_fd)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
