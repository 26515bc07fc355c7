"""The share cache's policy (fetch once per LAN, #15, docs/fetch-once.md §7): which kept
files to evict so that what a node keeps for the group stays within its budget.

Theory of operation
-------------------
A node keeps finished downloads for the group, up to ``budget`` bytes in all. Each kept
file is an entry: its content ``name`` (``ContentKey.index_name()``), its size and when it
was last *used* (served to a peer, or downloaded: both count). A file being served or
downloaded is *pinned* (a count: several streams may pin one file) and is never evicted.

``evictions()`` answers which entries must go: the least recently used unpinned ones,
oldest first, until the total is within the budget. Pinned entries stay even when that
leaves the cache over budget (they are let go once unpinned, at the next ``evictions``).
A budget of 0 disables sharing altogether (``sharing`` is False): nothing is kept, every
unpinned entry is evicted.

Pure: no clock (``now`` comes in as a value, a float of the caller's choosing), no I/O.
The adapter (``swarmget.node.share_cache``) removes the files and persists the index.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheEntry", "SharePolicy"]


@dataclass(slots=True, kw_only=True)
class CacheEntry:
    """One kept file: ``size`` bytes, last used at ``last_used``, pinned ``pins`` times."""

    name: str
    size: int
    last_used: float
    pins: int = 0


class SharePolicy:
    """LRU within a byte budget, pinned entries never evicted; see the module docstring."""

    def __init__(self, budget: int) -> None:
        if budget < 0:
            raise ValueError(f"a cache budget is >= 0 bytes, not {budget}")
        self.budget = budget
        self._entries: dict[str, CacheEntry] = {}

    @property
    def sharing(self) -> bool:
        """False with a budget of 0: the node neither serves nor announces anything."""
        return self.budget > 0

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entries(self) -> list[CacheEntry]:
        """The entries, least recently used first (a copy of each)."""
        ordered = sorted(self._entries.values(), key=lambda e: (e.last_used, e.name))
        return [
            CacheEntry(name=e.name, size=e.size, last_used=e.last_used, pins=e.pins)
            for e in ordered
        ]

    def total(self) -> int:
        """Bytes kept now (pinned or not)."""
        return sum(e.size for e in self._entries.values())

    def add(self, name: str, size: int, now: float, *, pins: int = 0) -> None:
        """Keep ``name`` (a completed download counts as a use), pinned ``pins`` times
        already (streams that began before it was kept). Adding a name again updates its
        size and use time; its pins stay (at least ``pins``)."""
        if size < 0 or pins < 0:
            raise ValueError(f"a kept file has >= 0 bytes and pins, not {size}, {pins}")
        entry = self._entries.get(name)
        if entry is None:
            self._entries[name] = CacheEntry(name=name, size=size, last_used=now, pins=pins)
        else:
            entry.size, entry.last_used = size, max(entry.last_used, now)
            entry.pins = max(entry.pins, pins)

    def remove(self, name: str) -> None:
        """Forget ``name`` (gone from disk, or evicted); unknown names are ignored."""
        self._entries.pop(name, None)

    def touch(self, name: str, now: float) -> None:
        """``name`` was used (served): it becomes the most recently used."""
        entry = self._entries.get(name)
        if entry is not None:
            entry.last_used = max(entry.last_used, now)

    def pin(self, name: str) -> None:
        """``name`` is being served or downloaded: never evict it until ``unpin``."""
        entry = self._entries.get(name)
        if entry is not None:
            entry.pins += 1

    def unpin(self, name: str) -> None:
        entry = self._entries.get(name)
        if entry is not None and entry.pins > 0:
            entry.pins -= 1

    def pinned(self, name: str) -> bool:
        entry = self._entries.get(name)
        return entry is not None and entry.pins > 0

    def evictions(self) -> list[str]:
        """The names to evict, least recently used first, so that the total fits the
        budget; pinned entries are never listed. Does not remove them: the adapter calls
        ``remove`` for each once the file is withdrawn."""
        excess = self.total() - self.budget
        chosen: list[str] = []
        for entry in sorted(self._entries.values(), key=lambda e: (e.last_used, e.name)):
            if excess <= 0 and self.sharing:
                break
            if entry.pins:
                continue
            chosen.append(entry.name)
            excess -= entry.size
        return chosen
