"""A node's standing with its hub as its status JSON says it, written and read in one place.

The node writes it (``GET /v1/status``'s ``hub``: null without a hub, else ``{"state" (a
``core.lifecycle.HubStanding`` value), "registered", "failures", "error", "hub_url"}``);
``swarmget status``, ``swarmget doctor`` and the portal's peers page read it back with
``standing_of`` (an older node's status has no ``state``: its ``registered`` is read) and
show it with ``standing_words``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from swarmget.core.lifecycle import HubStanding, parse_standing

if TYPE_CHECKING:  # (the readers, the CLI among them, need not import the hub client)
    from swarmget.net.membership import MembershipState

__all__ = ["membership_json", "standing_of", "standing_words"]


def membership_json(state: MembershipState) -> dict[str, Any]:
    """The node status's ``hub`` (None there: the node has no hub)."""
    return {
        "state": state.standing.value,
        "registered": state.registered is not None,
        "failures": state.failures,
        "error": state.error,
        "hub_url": state.hub_url,
    }


def standing_of(hub: Mapping[str, Any]) -> HubStanding:
    """The standing a status's (non-null) ``hub`` says; from an older node without
    ``state`` (or with one this version does not know): registered or not."""
    standing = parse_standing(hub.get("state"))
    if standing is not None:
        return standing
    return HubStanding.REGISTERED if hub.get("registered") is True else HubStanding.NOT_REGISTERED


def standing_words(hub: Mapping[str, Any] | None) -> str:
    """The standing in plain words (the caller escapes them for its medium)."""
    if not hub:
        return "none (downloads run alone)"
    where = str(hub.get("hub_url") or "its hub")
    standing = standing_of(hub)
    if standing is HubStanding.REGISTERED:
        return f"registered with {where}"
    if standing is HubStanding.REGISTERING:
        return f"registering with {where} (its first attempt is under way)"
    return f"not registered with {where} ({hub.get('error')})"
