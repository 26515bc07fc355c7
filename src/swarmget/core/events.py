"""What happened during a download, one frozen dataclass per kind of event.

The engine records an event when something worth showing happens (a range assigned, a
stream failed, a source banned ...). Each event carries its facts as values: byte ranges as
``ByteRange``, sources as ids, causes as enums or error codes. Whoever needs a fact (the
portal's piece map and timeline, the metrics' counters) reads a field; nobody parses text.

``describe(event)`` renders an event as one line for people (logs, the portal's timeline):
text is output only. ``to_json`` / ``from_json`` carry an event over the user API: the
fields, a ``kind`` discriminator, and (for readers that only show it) the ``source`` and the
rendered ``detail``. ``from_json`` returns None for an event it does not know or cannot read
(another version's, or a malformed one): a reader skips it and loses nothing else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from swarmget.core.ranges import ByteRange
from swarmget.core.scheduling import CancelCause

__all__ = ["CancelCause"]  # (re-exported: an event's cause is the scheduler's)


class BadDataCheck(enum.Enum):
    """Which check caught bytes that were not the file's."""

    PIECE_HASH = "piece_hash"  # a manifest piece's digest did not match
    SAMPLE = "sample"  # a sampled window differed from the origin's bytes


class RefetchCause(enum.Enum):
    """Why bytes are fetched again."""

    BAD_DATA = "bad_data"  # they failed a check (a piece hash, a sample)
    LOST_LEASE = "lost_lease"  # the stream that had them failed, stalled or was revoked
    NOT_ON_DISK = "not_on_disk"  # counted as delivered, but never written (a bug caught)


_WHY_REFETCHED = {
    RefetchCause.BAD_DATA: "bad data",
    RefetchCause.LOST_LEASE: "lease lost",
    RefetchCause.NOT_ON_DISK: "counted as delivered, not on disk",
}


@dataclass(frozen=True, kw_only=True)
class Assigned:
    at: float  # seconds since the download started
    source_id: str
    range: ByteRange


@dataclass(frozen=True, kw_only=True)
class EndgameCopy:
    """A second copy of a piece still in flight elsewhere (the endgame)."""

    at: float
    source_id: str
    range: ByteRange


@dataclass(frozen=True, kw_only=True)
class Revoked:
    """A stream stopped by the scheduler; the bytes it had not written go back."""

    at: float
    source_id: str
    cause: CancelCause
    reason: str  # for people


@dataclass(frozen=True, kw_only=True)
class StreamFailed:
    at: float
    source_id: str
    range: ByteRange  # the range the stream was given
    code: str  # the error's code (core.errors)
    message: str


@dataclass(frozen=True, kw_only=True)
class Banned:
    at: float
    source_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class BadData:
    """Bytes that failed a check: fetched again elsewhere; who sent them is blamed."""

    at: float
    source_ids: tuple[str, ...]  # who contributed the bytes
    range: ByteRange
    check: BadDataCheck
    piece: int | None = None  # the manifest's piece (PIECE_HASH)


@dataclass(frozen=True, kw_only=True)
class Refetched:
    """Byte ranges given back to be fetched again (by any source)."""

    at: float
    ranges: tuple[ByteRange, ...]  # sorted, not overlapping
    source_ids: tuple[str, ...]  # who had delivered them (bad data) or held them (lost lease)
    cause: RefetchCause

    @property
    def length(self) -> int:
        return sum(r.length for r in self.ranges)


@dataclass(frozen=True, kw_only=True)
class Restarted:
    """The file changed on the server: the download starts over."""

    at: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class FellBack:
    """The origin does not serve ranges: one stream from offset 0."""

    at: float


@dataclass(frozen=True, kw_only=True)
class Resumed:
    at: float
    bytes_on_disk: int


@dataclass(frozen=True, kw_only=True)
class RelayUsed:
    at: float
    hit: bool  # the relay had the file cached


@dataclass(frozen=True, kw_only=True)
class Verified:
    """The file is in place; ``algorithms`` are the digests that matched (none: size only)."""

    at: float
    path: str
    algorithms: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Failed:
    at: float
    code: str
    message: str


Event = (
    Assigned
    | EndgameCopy
    | Revoked
    | StreamFailed
    | Banned
    | BadData
    | Refetched
    | Restarted
    | FellBack
    | Resumed
    | RelayUsed
    | Verified
    | Failed
)

#: the ``kind`` each event has in JSON (the strings the user API has always used)
KINDS: dict[type[Any], str] = {
    Assigned: "assign",
    EndgameCopy: "duplicate",
    Revoked: "cancel",
    StreamFailed: "failure",
    Banned: "ban",
    BadData: "corrupt",
    Refetched: "refetch",
    Restarted: "restart",
    FellBack: "fallback",
    Resumed: "resume",
    RelayUsed: "relay",
    Verified: "done",
    Failed: "failed",
}
ROUTINE = (Assigned, EndgameCopy, Revoked, Refetched)  # logged at DEBUG


def kind(event: Event) -> str:
    return KINDS[type(event)]


def source(event: Event) -> str | None:
    """The source an event is about, as shown (several joined by ", "), if any."""
    if isinstance(event, BadData | Refetched):
        return ", ".join(event.source_ids) or None
    if isinstance(event, FellBack):
        return "origin"
    return getattr(event, "source_id", None)


def describe(event: Event, show: Callable[[ByteRange], str] = str) -> str:
    """The event as one line for people, byte ranges written by ``show`` (``[0, 100)`` by
    default). Output only: never parsed back."""
    match event:
        case Assigned(range=r) | EndgameCopy(range=r):
            return show(r)
        case Revoked(reason=text) | Banned(reason=text) | Restarted(reason=text):
            return text
        case StreamFailed():
            return f"{show(event.range)}: {event.message}"
        case BadData(check=BadDataCheck.PIECE_HASH):
            return f"piece {event.piece} {show(event.range)} failed its sha256"
        case BadData():
            return f"sample {show(event.range)} differs from the origin's bytes"
        case Refetched():
            shown = ", ".join(show(r) for r in event.ranges)
            why = _WHY_REFETCHED[event.cause]
            return f"{event.length} bytes to fetch again ({why}): {shown}"
        case Failed(message=text):
            return text
        case FellBack():
            return "the origin does not serve ranges: one stream"
        case Resumed():
            return f"{event.bytes_on_disk} bytes already on disk"
        case RelayUsed():
            return f"{'cached' if event.hit else 'fetched'} by the relay"
        case Verified():
            return f"{event.path} verified ({', '.join(event.algorithms) or 'size only'})"


def _range_json(r: ByteRange | None) -> list[int] | None:
    return None if r is None else [r.start, r.end]


def to_json(event: Event) -> dict[str, Any]:
    """The event for the user API: its fields, ``kind``, ``source`` and the rendered ``detail``."""
    out: dict[str, Any] = {
        "at": round(event.at, 3),
        "kind": kind(event),
        "source": source(event),
        "detail": describe(event),
    }
    match event:
        case Assigned() | EndgameCopy():
            out["range"] = _range_json(event.range)
        case Revoked():
            out["cause"] = event.cause.value
        case StreamFailed():
            out |= {"range": _range_json(event.range), "code": event.code, "message": event.message}
        case BadData():
            out |= {
                "sources": list(event.source_ids),
                "range": _range_json(event.range),
                "check": event.check.value,
                "piece": event.piece,
            }
        case Refetched():
            out |= {
                "ranges": [_range_json(r) for r in event.ranges],
                "sources": list(event.source_ids),
                "cause": event.cause.value,
            }
        case Resumed():
            out["bytes_on_disk"] = event.bytes_on_disk
        case RelayUsed():
            out["hit"] = event.hit
        case Verified():
            out |= {"path": event.path, "algorithms": list(event.algorithms)}
        case Failed():
            out["code"] = event.code
        case _:
            pass
    return out


def from_json(data: Mapping[str, Any]) -> Event | None:
    """An event as ``to_json`` wrote it; None if unknown or malformed."""
    try:
        return _from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


def _range(value: Any) -> ByteRange:
    start, end = value
    if type(start) is not int or type(end) is not int:
        raise TypeError("a range is two integers")
    return ByteRange(start, end)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _from_json(d: Mapping[str, Any]) -> Event | None:  # noqa: PLR0911 (one case per kind)
    at = float(d["at"])
    k = d.get("kind")
    sid = d.get("source")
    detail = d.get("detail", "")
    if k == "assign":
        return Assigned(at=at, source_id=_text(sid), range=_range(d["range"]))
    if k == "duplicate":
        return EndgameCopy(at=at, source_id=_text(sid), range=_range(d["range"]))
    if k == "cancel":
        cause = CancelCause(d["cause"])
        return Revoked(at=at, source_id=_text(sid), cause=cause, reason=_text(detail))
    if k == "failure":
        r, code, message = _range(d["range"]), _text(d["code"]), _text(d["message"])
        return StreamFailed(at=at, source_id=_text(sid), range=r, code=code, message=message)
    if k == "ban":
        return Banned(at=at, source_id=_text(sid), reason=_text(detail))
    if k == "corrupt":
        ids = tuple(_text(s) for s in d["sources"])
        piece = d.get("piece")
        if piece is not None and type(piece) is not int:
            raise TypeError("a piece is an integer")
        check = BadDataCheck(d["check"])
        return BadData(at=at, source_ids=ids, range=_range(d["range"]), check=check, piece=piece)
    if k == "refetch":
        ranges = tuple(_range(r) for r in d["ranges"])
        ids = tuple(_text(s) for s in d["sources"])
        why = RefetchCause(d["cause"])
        return Refetched(at=at, ranges=ranges, source_ids=ids, cause=why)
    return _simple_from_json(at, k, d)


def _simple_from_json(at: float, k: object, d: Mapping[str, Any]) -> Event | None:
    if k == "restart":
        return Restarted(at=at, reason=_text(d.get("detail", "")))
    if k == "fallback":
        return FellBack(at=at)
    if k == "resume":
        return Resumed(at=at, bytes_on_disk=int(d["bytes_on_disk"]))
    if k == "relay":
        return RelayUsed(at=at, hit=bool(d["hit"]))
    if k == "done":
        algorithms = tuple(_text(a) for a in d["algorithms"])
        return Verified(at=at, path=_text(d["path"]), algorithms=algorithms)
    if k == "failed":
        return Failed(at=at, code=_text(d["code"]), message=_text(d.get("detail", "")))
    return None


@dataclass
class EventCounters:
    """Totals counted as events happen (monotonic: nothing is ever subtracted), for the
    metrics. ``count`` is what a ``Download`` is given as its ``on_event``."""

    stalls: int = 0  # leases revoked because no data came
    bans: int = 0  # sources banned from a download
    stream_failures: int = 0
    bad_data: int = 0  # ranges that failed a piece hash or a sample
    restarts: int = 0
    refetches: int = 0  # times bytes were given back to be fetched again
    refetched_bytes: int = 0

    def count(self, event: Event) -> None:
        if isinstance(event, Revoked) and event.cause is CancelCause.STALLED:
            self.stalls += 1
        elif isinstance(event, Banned):
            self.bans += 1
        elif isinstance(event, StreamFailed):
            self.stream_failures += 1
        elif isinstance(event, BadData):
            self.bad_data += 1
        elif isinstance(event, Restarted):
            self.restarts += 1
        elif isinstance(event, Refetched):
            self.refetches += 1
            self.refetched_bytes += event.length
