"""The portal's download pages: the list (filtered by state, date and text) and its form, a
download's details, its actions (cancel, pause/resume, retry, remove and delete its file,
clear the finished ones), and their live updates."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy
from pydantic import ValidationError

from swarmget.core.auth import is_valid_node_id
from swarmget.core.digests import parse_checksum_spec
from swarmget.core.errors import DestinationExists, HubError, SwarmgetError, WrongState
from swarmget.core.lifecycle import DownloadState
from swarmget.core.urls import validate_url
from swarmget.destination import check_destination
from swarmget.node.download_record import DownloadRecord, describe
from swarmget.node.downloads import resolve_destination
from swarmget.protocol.user import CreateDownload, DownloadFilter
from swarmget.web import views
from swarmget.web.live import live_stream
from swarmget.web.site import HUB_TIMEOUT, PORTAL, PREFIX, SESSION, Portal, form_field

__all__ = [
    "NewDownload",
    "act_on_download",
    "cancel_download",
    "clear_finished",
    "details_page",
    "downloads_page",
    "live_details",
    "live_downloads",
    "remove_download",
    "start_download",
]

LIST_INTERVAL = 1.0  # seconds between live updates of the downloads list
DETAILS_INTERVAL = 0.5
DETAIL_EVENTS = 2000  # as many as the engine keeps


def _records(portal: Portal) -> list[DownloadRecord]:
    return sorted(portal.api.manager.records.values(), key=lambda r: r.created, reverse=True)


def _rows(portal: Portal, wanted: DownloadFilter) -> list[views.DownloadRow]:
    described = (describe(r, events=0) for r in _records(portal))
    return [views.download_row(d) for d in described if wanted.matches(d)]


#: The state filter's choices: (query value, label); "" is every state.
STATE_CHOICES = (
    ("", "any state"),
    ("starting,running", "running"),
    ("paused", "paused"),
    ("done", "done"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
    ("stopped", "stopped"),
)


@dataclass(frozen=True, kw_only=True)
class ListFilter:
    """The list's filter form as typed (dates are days, "to" includes its day), and the
    ``DownloadFilter`` it means; a value that cannot be read is named in ``error``."""

    state: str = ""
    since: str = ""
    until: str = ""
    q: str = ""
    wanted: DownloadFilter = field(default_factory=DownloadFilter)
    error: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ListFilter:
        state, since, until, q = (
            query.get(k, "").strip() for k in ("state", "since", "until", "q")
        )
        typed = cls(state=state, since=since, until=until, q=q)
        raw = {"state": state, "since": since, "q": q}
        try:
            if until:
                raw["before"] = (date.fromisoformat(until) + timedelta(days=1)).isoformat()
            wanted = DownloadFilter.from_query(raw)
        except (ValueError, ValidationError):
            return dataclasses.replace(typed, error="a filter value cannot be read: it is ignored")
        return dataclasses.replace(typed, wanted=wanted)

    @property
    def active(self) -> bool:
        return any((self.state, self.since, self.until, self.q))

    def query(self) -> str:
        """The query string of this filter (for the live updates' URL)."""
        pairs = {k: v for k, v in (("state", self.state), ("since", self.since),
                                   ("until", self.until), ("q", self.q)) if v}  # fmt: skip
        return urlencode(pairs)


async def downloads_page(request: web.Request) -> web.Response:
    return await _downloads_page(request, form=NewDownload(), errors={})


async def _downloads_page(
    request: web.Request, *, form: NewDownload, errors: Mapping[str, str], status: int = 200
) -> web.Response:
    portal = request.app[PORTAL]
    helpers, hub_note = await _helper_choices(portal)
    listed = ListFilter.from_query(request.query)
    return portal.page(
        "downloads.html",
        status=status,
        nav="downloads",
        csrf=request[SESSION].csrf,
        rows=_rows(portal, listed.wanted),
        filtered=listed.active,
        listed=listed,
        state_choices=STATE_CHOICES,
        form=form,
        errors=errors,
        helpers=helpers,
        hub_note=hub_note,
        download_dir=str(portal.api.download_dir),
        traffic=_traffic(portal),
    )


def _traffic(portal: Portal) -> views.TrafficView | None:
    """The overview's bytes per day and savings (the node's status; None without one)."""
    described = [describe(r, events=0) for r in _records(portal)]
    return views.traffic_view(portal.api.status().get("traffic"), described)


async def _helper_choices(portal: Portal) -> tuple[list[str], str | None]:
    try:
        async with asyncio.timeout(HUB_TIMEOUT):
            peers = await portal.api.peers()
    except (HubError, TimeoutError) as exc:
        return [], f"the hub cannot be reached ({exc or 'timed out'})"
    if not peers:
        return [], "no other node of this group is online: this node downloads alone"
    return sorted(str(p["node_id"]) for p in peers), None


@dataclass(frozen=True, kw_only=True)
class NewDownload:
    """The "start a download" form, as typed (shown again with the errors)."""

    url: str = ""
    output: str = ""
    checksum: str = ""
    helpers: tuple[str, ...] = ()
    force: bool = False
    restart_if_changed: bool = False

    @classmethod
    def from_form(cls, form: MultiDictProxy[str | bytes | bytearray | FileField]) -> NewDownload:
        return cls(
            url=(form_field(form, "url") or "").strip(),
            output=(form_field(form, "output") or "").strip(),
            checksum=(form_field(form, "checksum") or "").strip(),
            helpers=tuple(h for h in form.getall("helpers", []) if isinstance(h, str)),
            force=form_field(form, "force") == "on",
            restart_if_changed=form_field(form, "restart_if_changed") == "on",
        )

    def request(self) -> CreateDownload:
        """The user API's request (pydantic checks the lengths: ``ValidationError``)."""
        return CreateDownload(
            url=self.url,
            output=self.output or None,
            checksums=[self.checksum] if self.checksum else [],
            force=self.force,
            restart_if_changed=self.restart_if_changed,
            helpers=list(self.helpers) or None,
        )


async def start_download(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    values = NewDownload.from_form(await request.post())
    errors = _validate(portal, values)
    if not errors:
        try:
            body = values.request()
            spec = portal.api.spec_from(body)
            record, _joined = portal.api.manager.create_or_join(spec, body.helpers)
        except (ValidationError, SwarmgetError, OSError) as exc:
            errors["form"] = str(exc)
        else:  # (the same request as a running download: its page)
            raise web.HTTPSeeOther(f"{PREFIX}/downloads/{record.id}")
    return await _downloads_page(request, form=values, errors=errors, status=400)


def _validate(portal: Portal, values: NewDownload) -> dict[str, str]:
    """Each field's problem, to show next to it (the API would stop at the first)."""
    errors: dict[str, str] = {}
    try:
        validate_url(values.url)
    except SwarmgetError as exc:
        errors["url"] = str(exc)
    try:
        output = resolve_destination(portal.api.download_dir, values.output or None)
    except SwarmgetError as exc:
        errors["output"] = str(exc)
    else:
        if values.output and not output.is_dir():  # (a directory: the name comes later)
            try:  # the rules every download follows (destination.py), not one of our own
                check_destination(output, force=values.force)
            except DestinationExists:
                errors["output"] = f"{values.output} exists: tick “overwrite” to replace it"
            except SwarmgetError as exc:
                errors["output"] = str(exc)
    if values.checksum:
        try:
            parse_checksum_spec(values.checksum)
        except SwarmgetError as exc:
            errors["checksum"] = str(exc)
    if not all(is_valid_node_id(h) for h in values.helpers):
        errors["helpers"] = "not a node id"
    return errors


def _record(request: web.Request) -> DownloadRecord:
    record = request.app[PORTAL].api.manager.records.get(request.match_info["id"])
    if record is None:
        raise web.HTTPNotFound(text="no such download\n")
    return record


async def cancel_download(request: web.Request) -> web.Response:
    record = _record(request)
    request.app[PORTAL].api.manager.cancel(record.id)
    raise web.HTTPSeeOther(_back(request, record))


async def act_on_download(request: web.Request) -> web.Response:
    """Pause, resume or retry: the same download (the same id, the same row) goes on. A
    button left over from an earlier state (the download moved on meanwhile) gets 409."""
    record = _record(request)
    manager = request.app[PORTAL].api.manager
    act = {"pause": manager.pause, "resume": manager.resume, "retry": manager.retry}
    try:
        act[request.match_info["action"]](record.id)
    except WrongState as exc:
        raise web.HTTPConflict(text=f"{exc}: reload the page\n") from exc
    raise web.HTTPSeeOther(_back(request, record))


async def remove_download(request: web.Request) -> web.Response:
    """Forget a download that does not run; with ``delete_file`` its file goes too."""
    record = _record(request)
    api = request.app[PORTAL].api
    delete = form_field(await request.post(), "delete_file") == "on"
    try:
        api.manager.remove(record.id, delete_files=delete, download_dir=api.download_dir)
    except WrongState as exc:
        raise web.HTTPConflict(text=f"{exc}: reload the page\n") from exc
    raise web.HTTPSeeOther(f"{PREFIX}/")


async def clear_finished(request: web.Request) -> web.Response:
    request.app[PORTAL].api.manager.clear_finished()
    raise web.HTTPSeeOther(f"{PREFIX}/")


def _back(request: web.Request, record: DownloadRecord) -> str:
    """Where a form posted from the list or the details page returns to."""
    on_details = request.headers.get("Referer", "").endswith(f"/downloads/{record.id}")
    return f"{PREFIX}/downloads/{record.id}" if on_details else f"{PREFIX}/"


def _details(portal: Portal, record: DownloadRecord) -> views.DetailsView:
    leases, endgame = _scheduler_snapshot(record)
    return views.details_view(
        describe(record, events=DETAIL_EVENTS),
        node_id=portal.node_id,
        leases=leases,
        in_endgame=endgame,
    )


def _scheduler_snapshot(record: DownloadRecord) -> tuple[list[views.LeaseView], bool]:
    """The streams in flight now, from the download's scheduler."""
    snapshot = record.download.scheduler_statistics() if record.download is not None else None
    if snapshot is None or record.state is not DownloadState.RUNNING:
        return [], False
    now, stats = snapshot
    leases = [
        views.LeaseView(
            source=lease.source_id,
            start=lease.range.start,
            end=lease.range.end,
            duplicate=lease.duplicate,
            age=now - lease.started,
        )
        for lease in stats.leases
        if lease.range.end > lease.range.start
    ]
    return leases, stats.in_endgame


async def details_page(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    record = _record(request)
    return portal.page(
        "details.html",
        nav="downloads",
        csrf=request[SESSION].csrf,
        view=_details(portal, record),
        id=record.id,
    )


async def live_downloads(request: web.Request) -> web.StreamResponse:
    portal = request.app[PORTAL]
    csrf = request[SESSION].csrf
    listed = ListFilter.from_query(request.query)

    async def render() -> tuple[dict[str, str], bool]:
        rows = _rows(portal, listed.wanted)
        html = portal.render(
            "parts/download_rows.html", rows=rows, csrf=csrf, filtered=listed.active
        )
        return {"downloads-body": html}, False

    return await live_stream(request, LIST_INTERVAL, render)


async def live_details(request: web.Request) -> web.StreamResponse:
    portal = request.app[PORTAL]
    record = _record(request)
    csrf = request[SESSION].csrf

    async def render() -> tuple[dict[str, str], bool]:
        finished = not record.state.active
        view = _details(portal, record)
        parts = {
            part: portal.render(f"parts/{part}.html", view=view, csrf=csrf, id=record.id)
            for part in ("summary", "verification", "piecemap", "chart", "sources", "timeline")
        }
        return parts, finished

    return await live_stream(request, DETAILS_INTERVAL, render)
