"""What the swarm gave a finished download: "how much faster than alone", and the origin
bytes it saved (bytes that came from peers instead of this node's own origin link).

An estimate, not a measurement: nobody timed the download without helpers. This node's own
connections to the origin ran beside the helpers the whole time; the bytes they fetched over
the time they were fetching give this node's own origin rate, the rate it would have had
alone (at best: alone, it might have opened more connections). The whole download's rate
over the same download, divided by that, is the speedup::

    speedup ≈ (fetched bytes / elapsed) / (own origin bytes / own origin seconds)

It cannot be computed when this node fetched nothing from the origin itself (no own rate),
when the download resumed bytes from an earlier run (that run's time is not known), or when
no time passed. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["NoEstimate", "Speedup", "own_origin_seconds", "speedup_estimate"]


class NoEstimate(StrEnum):
    """Why a download has no speedup estimate."""

    NO_OWN_BYTES = "no_own_origin_bytes"  # all of it came from peers (or one stream)
    RESUMED = "resumed"  # part of the file came from an earlier run
    NO_TIME = "no_elapsed_time"
    NOTHING_FETCHED = "nothing_fetched"

    @property
    def text(self) -> str:
        return _TEXTS[self]


_TEXTS = {
    NoEstimate.NO_OWN_BYTES: "this node fetched nothing from the origin itself",
    NoEstimate.RESUMED: "resumed from an earlier run",
    NoEstimate.NO_TIME: "no time elapsed",
    NoEstimate.NOTHING_FETCHED: "nothing was fetched",
}


@dataclass(frozen=True, kw_only=True)
class Speedup:
    """A finished download's share of the swarm (see the module docstring)."""

    fetched_bytes: int  # this run's bytes, from every source
    own_origin_bytes: int  # from the origin over this node's own connections
    peer_bytes: int  # from helpers: the origin bytes this node saved
    elapsed: float
    own_origin_seconds: float  # the time its own connections were fetching
    factor: float | None  # the estimate; None: see ``missing``
    missing: NoEstimate | None = None


def own_origin_seconds(samples: Sequence[Sequence[Any]] | None, own_id: str) -> float | None:
    """How long this node's own source was fetching: the sum of the intervals between rate
    samples (``node.rates``: ``[at, {source: bytes so far}]``) in which it received bytes;
    None with fewer than two samples or a malformed list."""
    try:
        points = [(float(at), int(got.get(own_id, 0))) for at, got in samples or []]
    except (TypeError, ValueError, AttributeError):
        return None
    if len(points) < 2:
        return None
    return sum(
        t1 - t0
        for (t0, b0), (t1, b1) in zip(points, points[1:], strict=False)
        if b1 > b0 and t1 > t0
    )


def speedup_estimate(
    *,
    fetched_bytes: int,
    resumed_bytes: int,
    elapsed: float,
    received: Mapping[str, int],
    own_id: str,
    own_seconds: float | None = None,
) -> Speedup:
    """The estimate for one finished download. ``received``: bytes per source id (this
    node's own origin connections are ``own_id``; every other source is a peer);
    ``own_seconds``: how long the own source was fetching (``own_origin_seconds``), the
    whole ``elapsed`` when not known."""
    own = max(0, int(received.get(own_id, 0)))
    peers = sum(max(0, int(n)) for sid, n in received.items() if sid != own_id)
    own_time = elapsed if own_seconds is None or own_seconds <= 0 else min(own_seconds, elapsed)
    missing = None
    if resumed_bytes > 0:
        missing = NoEstimate.RESUMED
    elif elapsed <= 0:
        missing = NoEstimate.NO_TIME
    elif fetched_bytes <= 0:
        missing = NoEstimate.NOTHING_FETCHED
    elif own <= 0:
        missing = NoEstimate.NO_OWN_BYTES
    factor = None
    if missing is None:
        factor = (fetched_bytes / elapsed) / (own / own_time)
    return Speedup(
        fetched_bytes=max(0, fetched_bytes),
        own_origin_bytes=own,
        peer_bytes=peers,
        elapsed=max(0.0, elapsed),
        own_origin_seconds=max(0.0, own_time),
        factor=factor,
        missing=missing,
    )
