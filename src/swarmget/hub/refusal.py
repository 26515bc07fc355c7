"""A request the hub refuses, as a type (pure: the hub's state machines raise it too,
``swarmget.hub.edge`` answers it as JSON)."""

from __future__ import annotations

from swarmget.protocol.errors import HUB_ERRORS

__all__ = ["HubRefusal"]


class HubRefusal(Exception):
    """A request the hub refuses: ``code`` is a row of ``HUB_ERRORS``."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return HUB_ERRORS.row(self.code).status
