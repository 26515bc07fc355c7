"""Where a download's bytes came from, and the origin bytes a node saved its group.

Every chunk a download receives is counted under the kind of source it came over
(``SourceKind``), as it comes in, kept or not (a duplicate in the endgame, bytes found bad
later: they crossed a link all the same). ``BytesBySource`` is the frozen snapshot the
progress, the result and ``/metrics`` show.

Definitions (fetch once per LAN, #15; docs/fetch-once.md §8):

* **origin bytes of a download** = ``origin + helper + check``: what crossed an origin link
  for it (this node's own connections, its helpers' links, and the ranges fetched from the
  origin to check a helper's or a holder's bytes).
* **LAN bytes of a download** = ``lan``: what LAN holders streamed from their disks.
* **origin bytes a node saved its group** over a period = the bytes it *served* to LAN peers
  from its holdings plus the bytes it *received* from LAN holders, in that period. Each such
  byte is one that did not cross an origin link (a helper's bytes did: they save this node's
  link, not the group's origin bytes, and are not counted). Summed over every node of a group
  each LAN transfer counts twice, once at each end; the group's own saving is the sum of
  either side alone.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["BytesBySource", "SourceKind", "group_saved"]


class SourceKind(StrEnum):
    """The kind of link a byte came over (a ``/metrics`` label value: a bounded set)."""

    ORIGIN = "origin"  # this node's own connections to the origin
    HELPER = "helper"  # a helper's stream (over the helper's origin link)
    LAN = "lan"  # a LAN holder's disk (fetch once per LAN)
    CHECK = "check"  # from the origin, to check a helper's or a holder's bytes (sampling)


@dataclass(frozen=True, kw_only=True)
class BytesBySource:
    """Bytes received per ``SourceKind`` (see the module docstring)."""

    origin: int = 0
    helper: int = 0
    lan: int = 0
    check: int = 0

    @classmethod
    def of(cls, counts: Mapping[SourceKind, int]) -> BytesBySource:
        return cls(**{k.value: max(0, int(counts.get(k, 0))) for k in SourceKind})

    def get(self, kind: SourceKind) -> int:
        return int(getattr(self, kind.value))

    @property
    def over_origin_links(self) -> int:
        """Bytes that crossed an origin link: own connections, helpers, checks."""
        return self.origin + self.helper + self.check

    def to_json(self) -> dict[str, int]:
        return {k.value: self.get(k) for k in SourceKind}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BytesBySource:
        """Read back (``ValueError`` / ``TypeError`` for a malformed answer; a kind an
        older node did not count is 0)."""
        values = {k: int(data.get(k.value, 0)) for k in SourceKind}
        if any(v < 0 for v in values.values()):
            raise ValueError(f"negative byte counts: {dict(data)}")
        return cls.of(values)


def group_saved(*, lan_served: int, lan_received: int) -> int:
    """Origin bytes a node saved its group (see the module docstring): bytes it served to
    LAN peers from its holdings plus bytes it received from LAN holders."""
    if lan_served < 0 or lan_received < 0:
        raise ValueError("byte counts are never negative")
    return lan_served + lan_received
