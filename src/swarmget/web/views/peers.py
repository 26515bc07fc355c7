"""The peers page: this node and the live nodes of its group, one ``PeerRow`` each."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarmget.core.lifecycle import HubStanding
from swarmget.node.hub_standing import standing_of, standing_words
from swarmget.web.humanize import human_bytes, human_duration, human_rate


@dataclass(frozen=True, kw_only=True)
class PeerRow:
    node_id: str
    address: str
    group: str
    version: str
    slots: str
    rate_limit: str
    quota_left: str
    bytes_served: str
    streams_served: str
    refused: str
    last_seen: str
    is_self: bool = False


# A peer's JSON comes from the hub (checked by the node on arrival, but the portal must never
# answer 500 for a value it did not expect): every field is read as the type it should have,
# anything else shows as unknown ("—").
_TEXT_LIMIT = 128


def _count(value: Any) -> int | None:
    """A non-negative integer, else None (booleans are not counts)."""
    return value if type(value) is int and value >= 0 else None


def _number(value: Any) -> float | None:
    ok = type(value) in (int, float) and math.isfinite(value) and value >= 0
    return float(value) if ok else None


def _text(value: Any) -> str:
    return value[:_TEXT_LIMIT] if isinstance(value, str) else "—"


def _shown(value: int | None) -> str:
    return "—" if value is None else str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def peer_row(p: Mapping[str, Any], *, now: float) -> PeerRow:
    """A hub ``PeerInfo`` (as JSON); ``now`` on the hub's clock (ours: assumed in sync)."""
    stats = _mapping(p.get("stats"))
    quota = _count(stats.get("quota_left", p.get("quota_left")))
    rate_limit = _number(stats.get("rate_limit")) or _number(p.get("wan_rate"))
    slots = _count(p.get("slots", stats.get("slots")))
    last_seen = _number(p.get("last_seen"))
    age = None if last_seen is None else max(0.0, now - last_seen)
    return PeerRow(
        node_id=_text(p.get("node_id")),
        address=f"{_text(p.get('address'))}:{_shown(_count(p.get('port')))}",
        group=_text(p.get("group", "")),
        version=_text(p.get("version", "")),
        slots=f"{_count(stats.get('active_streams')) or 0} / {_shown(slots)}",
        rate_limit=human_rate(rate_limit) if rate_limit else "unlimited",
        quota_left=human_bytes(quota) if quota is not None else "no quota",
        bytes_served=human_bytes(_count(stats.get("bytes_served", 0))),
        streams_served=_shown(_count(stats.get("streams_served", 0))),
        refused=_shown(_count(stats.get("refused", 0))),
        last_seen="—" if age is None else f"{human_duration(age)} ago",
    )


def self_row(status: Mapping[str, Any], *, address: str) -> PeerRow:
    """This node, from its own ``/v1/status``."""
    helper = _mapping(status.get("helper"))
    rate_limit = _number(helper.get("rate_limit"))
    quota = _count(helper.get("quota_left"))
    own_slots = _shown(_count(helper.get("slots")))
    return PeerRow(
        node_id=_text(status.get("node_id")),
        address=address,
        group="",
        version=_text(status.get("version", "")),
        slots=f"{_count(helper.get('active_streams')) or 0} / {own_slots}",
        rate_limit=human_rate(rate_limit) if rate_limit else "unlimited",
        quota_left=human_bytes(quota) if quota is not None else "no quota",
        bytes_served=human_bytes(_count(helper.get("bytes_served", 0))),
        streams_served=_shown(_count(helper.get("streams_served", 0))),
        refused=_shown(_count(helper.get("refused", 0))),
        last_seen=_own_standing(status.get("hub")),
        is_self=True,
    )


def _own_standing(hub: object) -> str:
    """This node's "last heartbeat": now while the hub has it registered, else why not (no
    hub, its first attempt under way, or the latest error)."""
    if not isinstance(hub, Mapping):
        return standing_words(None)
    if standing_of(hub) is HubStanding.REGISTERED:
        return "now"
    return standing_words(hub)
