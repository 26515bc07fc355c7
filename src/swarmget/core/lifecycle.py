"""A download's lifecycle: one enum and the table of the moves it may make.

Theory of operation (after h11's ``_state.py``). A download the node runs for its user is
created ``STARTING``: the requester asks the hub for helpers and health-checks them. Once
its sources are known the engine runs and the download is ``RUNNING``. It ends in one of
four states:

    STARTING ──► RUNNING ──► DONE        the file is in place, verified as far as it could be
        │           │
        └───────────┴──────► FAILED      an error from the tree in ``core.errors``
                    │
                    ├──────► CANCELLED   the user asked (the part file is kept)
                    │
                    ├──────► STOPPED     the node shut down; it resumes at the next start
                    │
                    └──────► PAUSED      the user asked; the part file and its checkpoint
                                         are kept, and the node remembers it across restarts

``PAUSED`` is not an end: ``resume`` moves it back to ``STARTING`` (the same download, the
same id: it goes on from the bytes its part file holds, see ``core.resume``), and a paused
download may be cancelled. A ``FAILED`` or ``CANCELLED`` download may be retried in place:
it goes back to ``STARTING`` under its own id (one row in every list, never a second one).
``DONE`` and ``STOPPED`` are final. A download that fails, is cancelled, paused or stopped
before it ran (while helpers were being found) goes there straight from ``STARTING``.
``DONE`` is only reachable from ``RUNNING``.
A move that is not in the table is a bug of ours and raises ``IllegalTransition``: a
programming error (outside the ``SwarmgetError`` tree on purpose), never something a peer or
the user can cause.

The values are the strings the user API has always shown (``"running"`` ...), so the JSON
does not change; readers of that JSON turn the string back into the enum with
``DownloadState(text)`` and compare members, never text.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class DownloadState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    PAUSED = "paused"

    @property
    def active(self) -> bool:
        """Still going: not in one of the end states."""
        return self in ACTIVE

    @property
    def retryable(self) -> bool:
        """Ended without the file, and not because the node stopped (which resumes by itself):
        the user may start it again."""
        return self in (DownloadState.FAILED, DownloadState.CANCELLED)

    @property
    def pausable(self) -> bool:
        return DownloadState.PAUSED in TRANSITIONS[self]

    @property
    def finished(self) -> bool:
        """Over for good as far as the user is concerned: what "clear finished" clears
        (everything that neither runs nor waits to be resumed)."""
        return not self.active and self is not DownloadState.PAUSED


ACTIVE = frozenset({DownloadState.STARTING, DownloadState.RUNNING})
ENDED = frozenset(DownloadState) - ACTIVE

#: state -> the states it may move to (everything else raises)
TRANSITIONS: dict[DownloadState, frozenset[DownloadState]] = {
    DownloadState.STARTING: frozenset(
        {
            DownloadState.RUNNING,
            DownloadState.FAILED,
            DownloadState.CANCELLED,
            DownloadState.STOPPED,
            DownloadState.PAUSED,
        }
    ),
    DownloadState.RUNNING: frozenset(
        {
            DownloadState.DONE,
            DownloadState.FAILED,
            DownloadState.CANCELLED,
            DownloadState.STOPPED,
            DownloadState.PAUSED,
        }
    ),
    DownloadState.PAUSED: frozenset({DownloadState.STARTING, DownloadState.CANCELLED}),
    DownloadState.DONE: frozenset(),
    DownloadState.FAILED: frozenset({DownloadState.STARTING}),  # retried in place
    DownloadState.CANCELLED: frozenset({DownloadState.STARTING}),  # retried in place
    DownloadState.STOPPED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A move the table does not allow: a bug in the caller, never the user's or a peer's."""

    def __init__(self, current: DownloadState, target: DownloadState) -> None:
        super().__init__(f"a download cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def transition(current: DownloadState, target: DownloadState) -> DownloadState:
    """``target`` if the table allows ``current`` -> ``target``; else ``IllegalTransition``."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target


def parse_state(value: object) -> DownloadState | None:
    """A state read from JSON (another node's answer): the member, or None if unknown."""
    try:
        return DownloadState(str(value))
    except ValueError:
        return None


def still_going(download: Mapping[str, Any]) -> bool:
    """Whether a download as the user API describes it (JSON) has not ended yet (a state this
    version does not know counts as ended: a poller stops rather than waits forever)."""
    state = parse_state(download.get("state"))
    return state is not None and state.active


# --- a relay's fetch ---------------------------------------------------------------------------


class FetchPhase(enum.StrEnum):
    """A relay's fetch of one URL: ``FETCHING`` until it is ``READY`` (the blob is cached) or
    ``FAILED``; it never leaves either (a later request for the URL is a new fetch). The
    values are the relay API's ``state`` strings."""

    FETCHING = "fetching"
    READY = "ready"
    FAILED = "failed"


FETCH_TRANSITIONS: dict[FetchPhase, frozenset[FetchPhase]] = {
    FetchPhase.FETCHING: frozenset({FetchPhase.READY, FetchPhase.FAILED}),
    FetchPhase.READY: frozenset(),
    FetchPhase.FAILED: frozenset(),
}


def parse_phase(value: object) -> FetchPhase | None:
    """A fetch's state read from JSON or the relay's index: the member, or None if unknown."""
    try:
        return FetchPhase(str(value))
    except ValueError:
        return None


# --- a node's standing with its hub ------------------------------------------------------------


class HubStanding(enum.StrEnum):
    """Where a node with a hub stands with it: its status's ``hub.state`` (the node's
    ``net.membership.MembershipState.standing``). A node starts ``REGISTERING``; each
    attempt's outcome moves it to ``REGISTERED`` or ``NOT_REGISTERED``, and on between them
    as the hub answers or not (the node keeps trying while it runs)."""

    #: the first attempt to register has not ended yet (a node that just started)
    REGISTERING = "registering"
    #: the hub registered us (a heartbeat failing since, ``error``, does not undo that)
    REGISTERED = "registered"
    #: the latest attempt to register failed (``error`` says why); attempts go on
    NOT_REGISTERED = "not_registered"


def parse_standing(value: object) -> HubStanding | None:
    """A node's ``hub.state`` read from its status JSON: the member, or None (a node too old
    to say, or a value this version does not know)."""
    try:
        return HubStanding(str(value))
    except ValueError:
        return None
