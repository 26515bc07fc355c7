"""What the hub said when a download asked it for peers: answered (with how many), or why
not (unreachable, too old, refused), typed. A node's download carries it (``download_json``),
``swarmget get`` warns when its download ran alone because of the hub, and ``get --hub``'s
requester tells it as it happens (``swarmget.node.requester``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarmget.core.errors import HubError, HubTooOld, HubUnavailable

__all__ = ["HubOutcome", "HubReport", "outcome_of"]


class HubOutcome(enum.Enum):
    """How the hub answered a requester's peers query."""

    ANSWERED = "answered"  # it listed the live peers of our group (maybe none)
    UNAVAILABLE = "unavailable"  # no hub of the list could be reached (or each failed)
    TOO_OLD = "too_old"  # the hub does not know the requester-only query: upgrade it
    REJECTED = "rejected"  # the hub refused the query (secret, clock skew ...)
    NO_ANSWER = "no_answer"  # the download ended before the hub answered (no helper needed)


@dataclass(frozen=True, kw_only=True)
class HubReport:
    """One answer (or failure) of the hub to a requester: ``hub_url`` is the hub asked
    last, ``peers`` how many it listed, ``error`` what went wrong (None when answered)."""

    outcome: HubOutcome
    hub_url: str
    peers: int = 0
    error: str | None = None

    @property
    def alone(self) -> bool:
        """Whether the download goes on without the swarm because of the hub."""
        return self.outcome not in (HubOutcome.ANSWERED, HubOutcome.NO_ANSWER)

    def describe(self) -> str:
        """One line for people: what the hub said, and what the download does about it."""
        if self.outcome is HubOutcome.NO_ANSWER:
            return f"the download ended before hub {self.hub_url} answered"
        if not self.alone:
            return f"hub {self.hub_url} listed {self.peers} peers"
        return f"{_PROBLEMS[self.outcome]}, downloading alone: {self.error}"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.outcome.value,
            "hub_url": self.hub_url,
            "peers": self.peers,
            "alone": self.alone,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HubReport:
        """Read ``as_json`` back (``KeyError``, ``TypeError``, ``ValueError`` when malformed)."""
        error = data.get("error")
        return cls(
            outcome=HubOutcome(data["status"]),
            hub_url=str(data["hub_url"]),
            peers=int(data.get("peers", 0)),
            error=None if error is None else str(error),
        )

    def warning(self) -> str | None:
        """The one line that says a download ran alone because of the hub (None: it did
        not): ``hub URL unreachable: downloaded without helpers``."""
        if not self.alone:
            return None
        return f"hub {self.hub_url} {_SAID[self.outcome]}: downloaded without helpers"


_PROBLEMS = {
    HubOutcome.UNAVAILABLE: "hub unreachable",
    HubOutcome.TOO_OLD: "hub too old for requester-only queries (upgrade the hub)",
    HubOutcome.REJECTED: "hub refused the peers query",
}


_SAID = {
    HubOutcome.UNAVAILABLE: "unreachable",
    HubOutcome.TOO_OLD: "too old for this node (upgrade the hub)",
    HubOutcome.REJECTED: "refused the peers query",
}


def outcome_of(exc: HubError) -> HubOutcome:
    if isinstance(exc, HubTooOld):
        return HubOutcome.TOO_OLD
    return HubOutcome.UNAVAILABLE if isinstance(exc, HubUnavailable) else HubOutcome.REJECTED
