"""What the portal's pages show, computed from the user API's JSON (pure functions).

Input is what ``describe()`` returns for a download (the same JSON the user API serves) and,
for a running download, a snapshot of the scheduler's leases (``LeaseView``); output is small
frozen records the templates lay out. Nothing here does I/O or reads the clock.

The download's events arrive as JSON and are read back into the typed events of
``core.events`` (one that cannot be read is skipped); everything here reads their fields.

Re-fetched ranges are derived from the download's events: when a stream fails
(``StreamFailed``, with the range it was given) or is revoked (``Revoked`` for a stall, a ban,
a source gone), the bytes it had not written go back to the scheduler and are assigned again.
So the bytes of such a range that a *later* ``Assigned`` covers, and that its failed source
did not deliver, are the re-fetched ones; so are the bytes that failed a check (``BadData``)
and were assigned again. (A revoked stream's event does not name its range: every range its
source had been given so far stands in for it. A piece stolen from a third source after the
failure can then be marked too: the map errs on the side of showing more.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from swarmget.core import events as ev
from swarmget.core import verification as checks
from swarmget.core.lifecycle import DownloadState, parse_state
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.verification import VerificationReport
from swarmget.web.humanize import human_bytes, human_duration, human_rate

PALETTE_SIZE = 8  # colour classes c0 ... c7 in portal.css
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


# --- formatting ----------------------------------------------------------------------------------


def human_range(r: ByteRange) -> str:
    """``[0, 4194304)`` → ``0 B–4.0 MiB`` (the raw offsets stay in a tooltip)."""
    return f"{human_bytes(r.start)}–{human_bytes(r.end)}"


def read_events(raw: Iterable[Mapping[str, Any]]) -> list[ev.Event]:
    """The typed events of a download's JSON; one that cannot be read is left out."""
    return [e for e in (ev.from_json(x) for x in raw) if e is not None]


def display_name(d: Mapping[str, Any]) -> str:
    """The file's name: where it is written, else the URL's last segment, else its host."""
    result, progress = d.get("result"), d.get("progress")
    path = (result or {}).get("path") or (progress or {}).get("dest")
    if path:
        return PurePosixPath(str(path)).name
    parts = urlsplit(str(d["url"]))
    return unquote(PurePosixPath(parts.path).name) or parts.hostname or str(d["url"])


# --- the downloads list --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DownloadRow:
    id: str
    name: str
    url: str
    state: str  # a DownloadState's value (an unknown one is shown as it came)
    stage: str
    size: str
    done: str
    percent: float | None  # None: size not known yet
    rate: str
    eta: str
    elapsed: str
    error: str | None
    error_code: str | None
    verified: str | None
    can_cancel: bool
    can_retry: bool

    @property
    def percent_text(self) -> str:
        return "…" if self.percent is None else f"{self.percent:.0f}%"


def download_row(d: Mapping[str, Any]) -> DownloadRow:
    state = str(d["state"])
    known = parse_state(state)
    is_done = known is DownloadState.DONE
    progress: Mapping[str, Any] = d.get("progress") or {}
    result: Mapping[str, Any] | None = d.get("result")
    error: Mapping[str, Any] | None = d.get("error")
    size = result["size"] if result else progress.get("size")
    done = size if is_done else progress.get("done", 0)
    elapsed = result["elapsed"] if result else progress.get("elapsed")
    running = known is not None and known.active
    if running:
        rate = progress.get("rate")
    else:
        rate = size / elapsed if is_done and size and elapsed else None
    return DownloadRow(
        id=str(d["id"]),
        name=display_name(d),
        url=str(d["url"]),
        state=state,
        stage=str(progress.get("stage", state)),
        size=human_bytes(size),
        done=human_bytes(done),
        percent=_percent(is_done, done, size),
        rate=human_rate(rate),
        eta=human_duration(progress.get("eta")) if running else "—",
        elapsed=human_duration(elapsed),
        error=str(error["message"]) if error else None,
        error_code=str(error["code"]) if error else None,
        verified=", ".join(result["verified"]) or "size" if result else None,
        can_cancel=running,
        can_retry=known is not None and known.retryable,
    )


def _percent(is_done: bool, done: int | None, size: int | None) -> float | None:
    if is_done:
        return 100.0
    if not size:
        return None
    return min(100.0, 100.0 * (done or 0) / size)


# --- the details page ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LeaseView:
    """One stream in flight, from the scheduler: the part of its piece still to come."""

    source: str
    start: int
    end: int
    duplicate: bool
    age: float  # seconds since it was assigned


@dataclass(frozen=True, kw_only=True)
class Block:
    left: float  # percent of the file
    width: float
    colour: int
    source: str
    title: str
    duplicate: bool = False

    @property
    def style(self) -> str:
        return f"left:{self.left:.4f}%;width:{self.width:.4f}%"


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
class Verification:
    status: str  # ok, failed, pending, cancelled
    title: str
    lines: tuple[str, ...] = ()


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
    ticks: tuple[tuple[float, str], ...]
    sources: tuple[SourceRow, ...]
    timeline: tuple[TimelineEntry, ...]
    event_count: int
    verification: Verification
    endgame: bool

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
    return DetailsView(
        row=row,
        mode=mode,
        dest=(d.get("result") or {}).get("path") or progress.get("dest"),
        peers_checked=tuple(d.get("peers") or ()),
        size_known=bool(size),
        blocks=tuple(_done_blocks(sources, colours, size)),
        in_flight=tuple(_lease_blocks(leases, colours, size)),
        refetched=tuple(_plain_blocks(refetched, size, "re-fetched after a failure")),
        refetched_bytes=human_bytes(refetched.total()),
        ticks=_ticks(size),
        sources=tuple(
            _source_rows(sources, colours, node_id, row.state, leases, size, _troubles(events))
        ),
        timeline=tuple(_timeline(events, colours, reassigns)),
        event_count=len(events),
        verification=verification(d),
        endgame=in_endgame,
    )


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


def refetched_ranges(
    events: Sequence[ev.Event], sources: Iterable[Mapping[str, Any]]
) -> tuple[RangeSet, set[int]]:
    """The bytes fetched again after a failure, and the indexes of the ``Assigned`` events
    that fetched them. See the module docstring for how they are derived."""
    delivered = {str(s["id"]): RangeSet.from_pairs(s.get("segments") or []) for s in sources}
    windows = _given_back(events, delivered)
    out, later = RangeSet(), RangeSet()  # later: everything assigned after event i
    for i in range(len(events) - 1, -1, -1):
        for r in windows.get(i, ()):
            for x in _intersection(later, r):
                out.add(x)
        if isinstance(event := events[i], ev.Assigned):
            later.add(event.range)
    reassigns, pending = set(), RangeSet()
    for i, event in enumerate(events):
        for r in windows.get(i, ()):
            for x in _intersection(out, r):
                pending.add(x)
        if isinstance(event, ev.Assigned) and _intersection(pending, event.range):
            reassigns.add(i)
    return out, reassigns


def _given_back(
    events: Sequence[ev.Event], delivered: Mapping[str, RangeSet]
) -> dict[int, RangeSet]:
    """Per failure or revocation event: the bytes its source may have given back."""
    given: dict[str, RangeSet] = {}  # per source: every range assigned to it so far
    windows: dict[int, RangeSet] = {}
    for i, event in enumerate(events):
        match event:
            case ev.BadData():  # bytes that failed a check
                windows[i] = RangeSet([event.range])
                continue
            case ev.Assigned() | ev.EndgameCopy():
                given.setdefault(event.source_id, RangeSet()).add(event.range)
                continue
            case ev.StreamFailed():
                window = RangeSet([event.range])
            case ev.Revoked() if event.cause is not ev.CancelCause.LOST_RACE:
                window = given.get(event.source_id, RangeSet()).copy()
            case _:
                continue
        mine = delivered.get(event.source_id, RangeSet())
        windows[i] = RangeSet(x for r in window for x in mine.missing(r))
    return windows


def _intersection(ranges: RangeSet, rng: ByteRange) -> list[ByteRange]:
    return [x for r in ranges if (x := r.intersect(rng)) is not None]


def _pct(offset: int, size: int) -> float:
    return 100.0 * offset / size


def _done_blocks(
    sources: Sequence[Mapping[str, Any]], colours: Mapping[str, int], size: int | None
) -> Iterable[Block]:
    if not size:
        return
    for s in sources:
        sid = str(s["id"])
        for start, end in s.get("segments") or []:
            yield Block(
                left=_pct(start, size),
                width=_pct(end - start, size),
                colour=colours.get(sid, 0),
                source=sid,
                title=f"{human_bytes(start)}–{human_bytes(end)} from {sid}",
            )


def _lease_blocks(
    leases: Sequence[LeaseView], colours: Mapping[str, int], size: int | None
) -> Iterable[Block]:
    if not size:
        return
    for lease in leases:
        what = "endgame copy" if lease.duplicate else "in flight"
        yield Block(
            left=_pct(lease.start, size),
            width=_pct(lease.end - lease.start, size),
            colour=colours.get(lease.source, 0),
            source=lease.source,
            title=f"{human_bytes(lease.start)}–{human_bytes(lease.end)} {what} from {lease.source}",
            duplicate=lease.duplicate,
        )


def _plain_blocks(ranges: RangeSet, size: int | None, what: str) -> Iterable[Block]:
    if not size:
        return
    for r in ranges:
        yield Block(
            left=_pct(r.start, size),
            width=_pct(r.length, size),
            colour=0,
            source="",
            title=f"{human_bytes(r.start)}–{human_bytes(r.end)} {what}",
        )


def _ticks(size: int | None) -> tuple[tuple[float, str], ...]:
    if not size:
        return ()
    return tuple((q * 25.0, human_bytes(size * q // 4)) for q in range(5))


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
            role="this node → origin" if sid == node_id else "helper",
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


def verification(d: Mapping[str, Any]) -> Verification:
    state = parse_state(d["state"])
    result: Mapping[str, Any] | None = d.get("result")
    error: Mapping[str, Any] | None = d.get("error")
    if state is DownloadState.DONE and result is not None:
        verified = list(result.get("verified") or [])
        digests: Mapping[str, str] = result.get("digests") or {}
        report = _report(result)
        sampled = () if report is None else _sampling_lines(report)
        if not verified:
            return _unverified(report, sampled)
        lines = tuple(f"{alg} {digests.get(alg, '')}" for alg in verified) + sampled
        return Verification(status="ok", title=f"Verified: {', '.join(verified)} ✓", lines=lines)
    if state is DownloadState.FAILED and error is not None:
        title = "Verification failed" if error["code"] == "checksum_mismatch" else "Failed"
        return Verification(status="failed", title=title, lines=(f"{error['message']}",))
    if state is DownloadState.CANCELLED:
        return Verification(status="cancelled", title="Cancelled: the partial data is kept")
    if (d.get("progress") or {}).get("stage") == "verifying":
        return Verification(status="pending", title="Verifying…")
    return Verification(
        status="pending", title="Not verified yet: checked when the last byte lands"
    )


def _report(result: Mapping[str, Any]) -> VerificationReport | None:
    try:
        return VerificationReport.from_json(result.get("verification"))
    except (TypeError, ValueError, KeyError):
        return None  # an older node's answer, or a malformed one: say nothing about it


def _sampling_lines(report: VerificationReport) -> tuple[str, ...]:
    if report.level is checks.Verification.NONE and not report.helper_bytes:
        return ()
    return (
        f"helpers delivered {human_bytes(report.helper_bytes)} in {report.helper_streams} "
        f"streams; {report.sampled_streams} compared with the origin "
        f"({human_bytes(report.sampled_bytes)} re-fetched)",
    )


def _unverified(report: VerificationReport | None, lines: tuple[str, ...]) -> Verification:
    if report is not None and checks.Verification.SAMPLED in report.methods:
        title = "Spot-checked: every helper stream sampled against the origin (no checksum)"
        return Verification(status="ok", title=title, lines=lines)
    if report is not None and report.helper_bytes:
        title = "NOT verified: helpers' bytes were not checked (no checksum, sampling off)"
        return Verification(status="failed", title=title, lines=lines)
    return Verification(
        status="ok", title="Complete: size checked (no checksum given or published)"
    )


# --- peers -----------------------------------------------------------------------------------


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
        last_seen="now",
        is_self=True,
    )
