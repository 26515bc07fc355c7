"""The details page: summary, piece map, sources, timeline and verification of one download.

Input is what ``describe()`` returns for a download (the user API's JSON) and, for a running
download, a snapshot of the scheduler's leases (``LeaseView``). The download's events are
read back into the typed events of ``core.events`` (one that cannot be read is skipped);
everything here reads their fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmget.core import events as ev
from swarmget.core.byte_sources import SourceKind
from swarmget.core.lifecycle import DownloadState, parse_state
from swarmget.node.download_json import hub_from_json
from swarmget.node.hub_report import HubOutcome
from swarmget.web.humanize import human_bytes, human_rate
from swarmget.web.views.chart import RateChart, rate_chart
from swarmget.web.views.common import PALETTE_SIZE, human_range, read_events
from swarmget.web.views.downloads import DownloadRow, download_row
from swarmget.web.views.piecemap import (
    Block,
    LeaseView,
    done_blocks,
    lease_blocks,
    plain_blocks,
    refetched_ranges,
    resumed_ranges,
    ticks,
)
from swarmget.web.views.sharing import ByteFact, SharingView, by_source, byte_facts, sharing_view
from swarmget.web.views.traffic import speedup_text
from swarmget.web.views.verification import Verification, verification

STALL_HINT = 3.0  # an active source that delivered nothing for this long shows as stalled
TIMELINE_LIMIT = 300
KIND_LABELS = {
    "assign": "assign",
    "duplicate": "endgame copy",
    "cancel": "cancel",
    "failure": "failure",
    "ban": "ban",
    "restart": "restart",
    "fallback": "one stream",
    "resume": "resume",
    "done": "done",
    "failed": "failed",
    "corrupt": "bad data",
    "relay": "relay",
}


@dataclass(frozen=True, kw_only=True)
class SourceRow:
    id: str
    colour: int
    role: str
    state: str  # active, stalled, backing off, idle, banned, gone, finished, stopped
    claimed: str
    received: str
    share: str
    rate: str
    failures: int
    in_flight: int
    slots: int
    note: str | None


@dataclass(frozen=True, kw_only=True)
class TimelineEntry:
    at: str
    kind: str
    label: str
    source: str | None
    colour: int | None
    detail: str
    raw: str


@dataclass(frozen=True, kw_only=True)
class HubLine:
    """What the hub said when the download asked it for peers, in one line."""

    status: str  # a HubOutcome value
    alone: bool  # the download ran without helpers because of the hub
    line: str


def hub_line(d: Mapping[str, Any]) -> HubLine | None:
    """The download's hub line (None: no hub, not asked yet, or unreadable)."""
    try:
        report = hub_from_json(d)
    except (KeyError, TypeError, ValueError):
        return None
    if report is None:
        return None
    if report.outcome is HubOutcome.ANSWERED:
        line = f"hub {report.hub_url} listed {report.peers} peers"
    else:
        line = report.warning() or report.describe()
    return HubLine(status=report.outcome.value, alone=report.alone, line=line)


@dataclass(frozen=True, kw_only=True)
class DetailsView:
    row: DownloadRow
    mode: str
    dest: str | None
    peers_checked: tuple[str, ...]
    size_known: bool
    blocks: tuple[Block, ...]
    in_flight: tuple[Block, ...]
    refetched: tuple[Block, ...]
    refetched_bytes: str
    resumed: tuple[Block, ...]  # a finished file's bytes from an earlier run: present
    resumed_bytes: str
    ticks: tuple[tuple[float, str], ...]
    sources: tuple[SourceRow, ...]
    timeline: tuple[TimelineEntry, ...]
    event_count: int
    verification: Verification
    endgame: bool
    chart: RateChart | None = None  # the rate over time, stacked by source
    speedup: str | None = None  # once done: "faster than alone", an estimate, in words
    saved: str | None = None  # once done: bytes from peers instead of this node's origin link
    hub: HubLine | None = None  # what the hub said (None: no hub asked)
    by_source: tuple[ByteFact, ...] = ()  # bytes so far per kind of source (live)
    sharing: SharingView | None = None  # fetch once per LAN, once done (None: not asked)

    @property
    def contributors(self) -> tuple[SourceRow, ...]:
        """The sources that put bytes into the file (the piece map's legend)."""
        return tuple(s for s in self.sources if s.claimed != human_bytes(0))


def details_view(
    d: Mapping[str, Any],
    *,
    node_id: str,
    leases: Sequence[LeaseView] = (),
    in_endgame: bool = False,
) -> DetailsView:
    row = download_row(d)
    progress: Mapping[str, Any] = d.get("progress") or {}
    events = read_events(d.get("events") or [])
    sources: list[Mapping[str, Any]] = list(progress.get("sources") or [])
    size = (d.get("result") or {}).get("size") or progress.get("size")
    mode = str(progress.get("mode", "segmented"))
    colours = {str(s["id"]): i % PALETTE_SIZE for i, s in enumerate(sources)}
    if mode == "single-stream" and not sources:
        sources = [_single_stream_source(node_id, progress, row)]
        colours = {node_id: 0}
    refetched, reassigns = refetched_ranges(events, sources)
    resumed = (
        resumed_ranges(sources, size) if parse_state(d["state"]) is DownloadState.DONE else None
    )
    return DetailsView(
        row=row,
        mode=mode,
        dest=(d.get("result") or {}).get("path") or progress.get("dest"),
        peers_checked=tuple(d.get("peers") or ()),
        size_known=bool(size),
        blocks=tuple(done_blocks(sources, colours, size)),
        in_flight=tuple(lease_blocks(leases, colours, size)),
        refetched=tuple(plain_blocks(refetched, size, "re-fetched after a failure")),
        refetched_bytes=human_bytes(refetched.total()),
        resumed=tuple(plain_blocks(resumed, size, "on disk from an earlier run (resumed)"))
        if resumed
        else (),
        resumed_bytes=human_bytes(resumed.total() if resumed else 0),
        ticks=ticks(size),
        sources=tuple(
            _source_rows(sources, colours, node_id, row.state, leases, size, _troubles(events))
        ),
        timeline=tuple(_timeline(events, colours, reassigns)),
        event_count=len(events),
        verification=verification(d),
        endgame=in_endgame,
        chart=rate_chart(d.get("rates"), colours),
        speedup=speedup_text(d.get("speedup")),
        saved=_saved(d.get("speedup")),
        hub=hub_line(d),
        by_source=byte_facts(by_source(d)),
        sharing=sharing_view(d),
    )


def _saved(speedup: Mapping[str, Any] | None) -> str | None:
    try:
        return None if not speedup else human_bytes(int(speedup["peer_bytes"]))
    except (KeyError, TypeError, ValueError):
        return None


def _single_stream_source(
    node_id: str, progress: Mapping[str, Any], row: DownloadRow
) -> dict[str, Any]:
    done = int(progress.get("done") or 0)
    return {
        "id": node_id,
        "state": "active" if row.can_cancel else "idle",
        "slots": 1,
        "active": 1 if row.can_cancel else 0,
        "received": done,
        "claimed": done,
        "rate": progress.get("rate") or 0.0,
        "failures": 0,
        "ban_reason": None,
        "segments": [[0, done]] if done else [],
    }


def _role(source: Mapping[str, Any], node_id: str) -> str:
    if source["id"] == node_id:
        return "this node → origin"
    return "LAN holder" if source.get("kind") == SourceKind.LAN.value else "helper"


def _source_rows(
    sources: Sequence[Mapping[str, Any]],
    colours: Mapping[str, int],
    node_id: str,
    download_state: str,
    leases: Sequence[LeaseView],
    size: int | None,
    troubles: Mapping[str, str],
) -> Iterable[SourceRow]:
    for s in sources:
        sid = str(s["id"])
        mine = [lease for lease in leases if lease.source == sid]
        claimed = int(s.get("claimed") or 0)
        trouble = troubles.get(sid)
        yield SourceRow(
            id=sid,
            colour=colours.get(sid, 0),
            role=_role(s, node_id),
            state=source_state(s, download_state, mine, dropped=trouble is not None),
            claimed=human_bytes(claimed),
            received=human_bytes(s.get("received")),
            share=f"{100.0 * claimed / size:.0f}%" if size else "—",
            rate=human_rate(s.get("rate"))
            if parse_state(download_state) is DownloadState.RUNNING
            else "—",
            failures=int(s.get("failures") or 0),
            in_flight=int(s.get("active") or 0),
            slots=int(s.get("slots") or 0),
            note=s.get("ban_reason") or trouble,
        )


def _troubles(events: Sequence[ev.Event]) -> dict[str, str]:
    """Per source whose last stream failed or was revoked (and got no work since): why."""
    out: dict[str, str] = {}
    for event in events:
        if isinstance(event, ev.Revoked) and event.cause is ev.CancelCause.LOST_RACE:
            continue  # the copy that lost a race: nothing wrong with its source
        if isinstance(event, ev.StreamFailed | ev.Revoked | ev.Banned):
            out[event.source_id] = ev.describe(event, human_range)
        elif isinstance(event, ev.Assigned | ev.EndgameCopy):
            out.pop(event.source_id, None)
    return out


def source_state(
    s: Mapping[str, Any],
    download_state: str,
    leases: Sequence[LeaseView],
    *,
    dropped: bool = False,
) -> str:
    """What the portal calls a source's state: the scheduler's, plus stalled, finished and
    dropped out (its last stream failed and it got no work after that)."""
    state = str(s.get("state"))
    if state in ("banned", "gone"):
        return state
    ended = parse_state(download_state)
    if ended is DownloadState.DONE:
        return "dropped out" if dropped else "finished"
    if ended is not None and ended.retryable:
        return "stopped"
    if state == "active":
        stalled = not s.get("rate") and leases and min(x.age for x in leases) >= STALL_HINT
        return "stalled" if stalled else "active"
    return "backing off" if state == "backoff" else "idle"


def _timeline(
    events: Sequence[ev.Event], colours: Mapping[str, int], reassigns: set[int]
) -> Iterable[TimelineEntry]:
    start = max(0, len(events) - TIMELINE_LIMIT)
    for i in range(len(events) - 1, start - 1, -1):
        event = events[i]
        kind = ev.kind(event)
        label = KIND_LABELS.get(kind, kind)
        if i in reassigns:
            label = "reassign"
        elif isinstance(event, ev.Revoked) and event.cause is ev.CancelCause.LOST_RACE:
            label = "endgame: lost"
        source = ev.source(event)
        yield TimelineEntry(
            at=f"+{event.at:.2f} s",
            kind="reassign" if i in reassigns else kind,
            label=label,
            source=source,
            colour=None if source is None else colours.get(source),
            detail=ev.describe(event, human_range),
            raw=ev.describe(event),
        )
