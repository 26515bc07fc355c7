"""A node as the hub lists it in a peers answer (``swarmget.hub.app``).

``peer_json`` builds one entry; ``PeerFragments`` keeps each node's entry as JSON text,
made once per version of its record, and ``peers_answer_text`` puts an answer together
from those texts: a peers answer lists up to ``peers_limit`` entries, and building each
anew (the stats validated, then the whole answer dumped and encoded) cost ~270 µs per
answer at 32 entries, for records that change once per heartbeat at most (issue #17).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from swarmget.hub.store import NodeRecord
from swarmget.protocol.hub import PeerStats

__all__ = ["MAX_FRAGMENTS", "PeerFragments", "peer_json", "peers_answer_text"]

#: Entries ``PeerFragments`` keeps at most (one per node id); beyond, it starts afresh.
MAX_FRAGMENTS = 50_000


def peer_json(record: NodeRecord) -> dict[str, Any]:
    """A node as ``GET /v1/peers`` lists it (``swarmget.protocol.hub.PeerEntry``): the
    record as it is stored (not validated again: a node validates each entry it reads).
    Stats are checked again: a record written before they were validated lists none.
    The keys are ``PeerEntry``'s fields (``tests/hub/test_peer_entries.py`` checks)."""
    return {
        "node_id": record.node_id,
        "address": record.address,
        "port": record.port,
        "url": record.url,
        "version": record.version,
        "slots": record.slots,
        "group": record.group,
        "wan_rate": record.wan_rate,
        "quota_left": record.quota_left,
        "registered_at": record.registered_at,
        "last_seen": record.last_seen,
        "stats": _clean_stats(record.stats),
    }  # PeerEntry's fields, in order, without building one (70 µs each: issue #17)


def _clean_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return PeerStats.model_validate(stats).as_json()
    except pydantic.ValidationError:
        return {}


class PeerFragments:
    """Each node's peers-answer entry as JSON text, kept until its record changes: an
    entry is made again when the record differs in any field from the one it was made from
    (the stats compared by value), never served stale."""

    def __init__(self, max_entries: int = MAX_FRAGMENTS) -> None:
        self._max = max_entries
        #: per node id: the record the text was made from (its own copy of the stats)
        self._kept: dict[str, tuple[NodeRecord, str]] = {}
        #: entries made (the rest of the lookups were answered from what was kept)
        self.made = 0

    def text(self, record: NodeRecord) -> str:
        """``record``'s entry (``peer_json``) as JSON text."""
        kept = self._kept.get(record.node_id)
        if kept is not None and kept[0] == record:
            return kept[1]
        text = json.dumps(peer_json(record))
        if len(self._kept) >= self._max and record.node_id not in self._kept:
            self._kept.clear()  # (nodes that left long ago: one round of entries made again)
        self._kept[record.node_id] = (dataclasses.replace(record, stats=dict(record.stats)), text)
        self.made += 1
        return text

    def forget(self, node_id: str) -> None:
        """A node that left: its entry goes."""
        self._kept.pop(node_id, None)

    def __len__(self) -> int:
        return len(self._kept)


def peers_answer_text(group: str, entries: Iterable[str], total: int) -> str:
    """A ``GET /v1/peers`` answer (``protocol.hub.PeersAnswer``: ``group``, ``peers``,
    ``total``) around entries already in JSON text."""
    return f'{{"group": {json.dumps(group)}, "peers": [{", ".join(entries)}], "total": {total}}}'
