"""A download as JSON, written and read in one place.

The user API serves it (``GET /v1/downloads/{id}``, the SSE stream, the list), the portal lays
it out, ``swarmget get`` reads it back when a node runs the download, and ``get --json``
prints the result part of it. Every one of them goes through the functions here, so the shape
is defined once::

    {"id", "url" (redacted), "state" (a DownloadState value), "created", "peers",
     "error": null | {"code", "message"},
     "hub": null | {"status" (a HubOutcome value), "hub_url", "peers", "alone", "error"},
     "progress"?: {"stage", "dest", "size", "done", "rate", "eta", "elapsed", "mode",
                   "resumed_bytes", "sources": [source ...],
                   "by_source": {"origin", "helper", "lan", "check"}},   (bytes so far, live)

    source: {"id", "kind"? (a SourceKind value: origin, helper, lan), "state", "slots", ...
     "events"?: [core.events.to_json ...],
     "result"?: {"path", "size", "elapsed", "mode", "resumed_bytes", "fetched_bytes",
                 "last_byte_to_done", "verified", "verification", "digests",
                 "timeline": {"hub", "hub_peers", "probe", "joined": {id: s},
                              "first_byte": {id: s}, "last_data": {id: s},
                              "last_byte", "verified"}},
     "rates"?: [[seconds since the start, {source id: bytes received so far}] ...],
     "speedup"?: {"factor": null | x, "missing": null | core.savings.NoEstimate value,
                  "fetched_bytes", "own_origin_bytes", "peer_bytes", "elapsed",
                  "own_origin_seconds"}}   (a finished download's, an estimate)

    source: {"id", "state", "slots", "active", "received", "claimed", "rate", "failures",
             "ban_reason", "segments": [[start, end] ...], "cut", "ranges", "waited",
             "ahead"}  (cut: its streams we ended before the end asked for,
             ``SourceInfo.cut``; ranges: the ranges it was asked for, ``SourceInfo.ranges``;
             waited: seconds they waited for their first data, summed; ahead: of those
             ranges, the ones asked for while one of its streams was about to end,
             ``SourceInfo.ahead``; all 0 from an older node)

Each ``*_json`` has a ``*_from_json`` that reads it back (``KeyError``, ``TypeError`` or
``ValueError`` for a malformed answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmget.core import events as ev
from swarmget.core.byte_sources import BytesBySource, SourceKind
from swarmget.core.errors import SwarmgetError
from swarmget.core.lifecycle import DownloadState
from swarmget.core.ranges import ByteRange
from swarmget.core.savings import NoEstimate, Speedup
from swarmget.core.scheduling import SourceInfo, SourceState
from swarmget.core.urls import redact_url
from swarmget.core.verification import VerificationReport
from swarmget.engine import DownloadProgress, DownloadResult, Stage, Timeline
from swarmget.node.hub_report import HubReport

if TYPE_CHECKING:  # (read only when a result has it: `swarmget get` starts without it)
    from swarmget.engine.sharing import SharingReport


def download_json(
    *,
    download_id: str,
    url: str,
    state: DownloadState,
    created: float,
    peers: Iterable[str],
    error: SwarmgetError | None,
    progress: DownloadProgress | None,
    events: Iterable[ev.Event] | None,
    result: DownloadResult | None,
    hub: HubReport | None = None,
    rates: list[list[Any]] | None = None,
    speedup: Speedup | None = None,
) -> dict[str, Any]:
    """The JSON view of one download (see the module docstring)."""
    out: dict[str, Any] = {
        "id": download_id,
        "url": redact_url(url),  # shown and logged: no query values
        "state": state.value,
        "created": created,
        "peers": list(peers),
        "error": error_json(error),
        "hub": None if hub is None else hub.as_json(),
    }
    if progress is not None:
        out["progress"] = progress_json(progress)
    if events is not None:
        out["events"] = [ev.to_json(e) for e in events]
    if result is not None:
        out["result"] = result_json(result)
    if rates is not None:
        out["rates"] = rates
    if speedup is not None:
        out["speedup"] = speedup_json(speedup)
    return out


def speedup_json(s: Speedup) -> dict[str, Any]:
    return {
        "factor": s.factor,
        "missing": None if s.missing is None else s.missing.value,
        "fetched_bytes": s.fetched_bytes,
        "own_origin_bytes": s.own_origin_bytes,
        "peer_bytes": s.peer_bytes,
        "elapsed": s.elapsed,
        "own_origin_seconds": s.own_origin_seconds,
    }


def error_json(error: SwarmgetError | None) -> dict[str, str] | None:
    return None if error is None else {"code": error.code, "message": str(error)}


def progress_json(p: DownloadProgress) -> dict[str, Any]:
    return {
        "stage": p.stage.value,
        "dest": str(p.dest) if p.dest is not None else None,
        "size": p.size,
        "done": p.done,
        "rate": p.rate,
        "eta": p.eta,
        "elapsed": p.elapsed,
        "mode": p.mode,
        "resumed_bytes": p.resumed_bytes,
        "sources": [_with_kind(source_json(s), p.kinds.get(s.source_id)) for s in p.sources],
        "by_source": p.by_source.to_json(),
    }


def _with_kind(source: dict[str, Any], kind: SourceKind | None) -> dict[str, Any]:
    return source if kind is None else source | {"kind": kind.value}


def source_json(s: SourceInfo) -> dict[str, Any]:
    return {
        "id": s.source_id,
        "state": s.state.value,
        "slots": s.slots,
        "active": s.active_leases,
        "received": s.received,
        "claimed": s.claimed,
        "rate": s.rate,
        "failures": s.failures,
        "ban_reason": s.ban_reason,
        "segments": [[r.start, r.end] for r in s.segments],
        "cut": s.cut,
        "ranges": s.ranges,
        "waited": round(s.waited, 4),
        "ahead": s.ahead,
    }


def result_json(r: DownloadResult) -> dict[str, Any]:
    """The result part (its sources are in ``progress``; ``sharing`` only when sharing
    was asked for: fetch once per LAN, #15)."""
    out = {
        "path": str(r.path),
        "size": r.size,
        "elapsed": r.elapsed,
        "mode": r.mode,
        "resumed_bytes": r.resumed_bytes,
        "fetched_bytes": r.fetched_bytes,
        "last_byte_to_done": r.last_byte_to_done,
        "verified": list(r.verified),
        "verification": r.verification.to_json(),
        "digests": r.digests,
        "timeline": timeline_json(r.timeline),
    }
    if r.sharing is not None:
        out["sharing"] = r.sharing.to_json()
    return out


def timeline_json(t: Timeline) -> dict[str, Any]:
    return {
        "hub": t.hub,
        "hub_peers": t.hub_peers,
        "probe": t.probe,
        "joined": dict(t.joined),
        "first_byte": dict(t.first_byte),
        "last_data": dict(t.last_data),
        "last_byte": t.last_byte,
        "verified": t.verified,
    }


# --- reading it back -----------------------------------------------------------------------------


def progress_from_json(url: str, p: Mapping[str, Any]) -> DownloadProgress:
    return DownloadProgress(
        stage=Stage(p["stage"]),
        url=url,
        dest=Path(p["dest"]) if p.get("dest") else None,
        size=p.get("size"),
        done=p["done"],
        rate=p["rate"],
        elapsed=p["elapsed"],
        mode=p["mode"],
        resumed_bytes=p["resumed_bytes"],
        sources=tuple(source_from_json(s) for s in p["sources"]),
        by_source=BytesBySource.from_json(p.get("by_source") or {}),  # (none: an older node)
        kinds={s["id"]: SourceKind(s["kind"]) for s in p["sources"] if "kind" in s},
    )


def source_from_json(s: Mapping[str, Any]) -> SourceInfo:
    return SourceInfo(
        source_id=s["id"],
        state=SourceState(s["state"]),
        slots=s["slots"],
        active_leases=s["active"],
        received=s["received"],
        claimed=s["claimed"],
        rate=s["rate"],
        failures=s["failures"],
        segments=tuple(ByteRange(a, b) for a, b in s["segments"]),
        ban_reason=s["ban_reason"],
        cut=int(s.get("cut", 0)),
        ranges=int(s.get("ranges", 0)),
        waited=float(s.get("waited", 0.0)),
        ahead=int(s.get("ahead", 0)),
    )


def speedup_from_json(data: Mapping[str, Any]) -> Speedup | None:
    """A download's ``speedup`` part read back; None when it has none (not done, or from an
    older node)."""
    s = data.get("speedup")
    if s is None:
        return None
    factor = s["factor"]
    return Speedup(
        factor=None if factor is None else float(factor),
        missing=None if s["missing"] is None else NoEstimate(s["missing"]),
        fetched_bytes=int(s["fetched_bytes"]),
        own_origin_bytes=int(s["own_origin_bytes"]),
        peer_bytes=int(s["peer_bytes"]),
        elapsed=float(s["elapsed"]),
        own_origin_seconds=float(s["own_origin_seconds"]),
    )


def result_from_json(data: Mapping[str, Any]) -> DownloadResult:
    """The ``DownloadResult`` of a finished download as ``download_json`` described it."""
    r = data["result"]
    progress = progress_from_json(data["url"], data["progress"])
    return DownloadResult(
        path=Path(r["path"]),
        size=r["size"],
        elapsed=r["elapsed"],
        mode=r["mode"],
        resumed_bytes=r["resumed_bytes"],
        fetched_bytes=r["fetched_bytes"],
        digests=dict(r["digests"]),
        verified=tuple(r["verified"]),
        sources=progress.sources,
        last_byte_to_done=r["last_byte_to_done"],
        verification=(  # an older node's result has none: it never sampled
            VerificationReport.from_json(r["verification"])
            if "verification" in r
            else VerificationReport()
        ),
        timeline=timeline_from_json(r["timeline"]) if "timeline" in r else Timeline(),
        sharing=_sharing_from_json(r["sharing"]) if "sharing" in r else None,
    )


def _sharing_from_json(data: dict[str, Any]) -> SharingReport:
    """A shared download's report; imported here, only for the results that have one
    (``engine.sharing`` and what it imports cost `swarmget get` ~10 ms at every start)."""
    from swarmget.engine.sharing import SharingReport

    return SharingReport.from_json(data)


def timeline_from_json(t: Mapping[str, Any]) -> Timeline:
    return Timeline(
        hub=_seconds(t.get("hub")),
        hub_peers=None if t.get("hub_peers") is None else int(t["hub_peers"]),
        probe=_seconds(t.get("probe")),
        joined={str(k): float(v) for k, v in t["joined"].items()},
        first_byte={str(k): float(v) for k, v in t["first_byte"].items()},
        # (older nodes do not send it)
        last_data={str(k): float(v) for k, v in t.get("last_data", {}).items()},
        last_byte=_seconds(t.get("last_byte")),
        verified=_seconds(t.get("verified")),
    )


def hub_from_json(data: Mapping[str, Any]) -> HubReport | None:
    """What the hub said, as ``download_json`` wrote it (None: no hub, or an older node)."""
    hub = data.get("hub")
    return None if hub is None else HubReport.from_json(hub)


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)
