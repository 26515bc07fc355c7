"""The portal's download pages: the list and its form, a download's details, cancel and
retry, and their live updates."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy
from pydantic import ValidationError

from swarmget.core.auth import is_valid_node_id
from swarmget.core.digests import parse_checksum_spec
from swarmget.core.errors import DestinationExists, HubError, SwarmgetError
from swarmget.core.lifecycle import DownloadState
from swarmget.core.urls import validate_url
from swarmget.destination import check_destination
from swarmget.node.downloads import DownloadRecord, describe, resolve_destination
from swarmget.protocol.user import CreateDownload
from swarmget.web import views
from swarmget.web.live import live_stream
from swarmget.web.site import HUB_TIMEOUT, PORTAL, PREFIX, SESSION, Portal, form_field

__all__ = [
    "NewDownload",
    "cancel_download",
    "details_page",
    "downloads_page",
    "live_details",
    "live_downloads",
    "retry_download",
    "start_download",
]

LIST_INTERVAL = 1.0  # seconds between live updates of the downloads list
DETAILS_INTERVAL = 0.5
DETAIL_EVENTS = 2000  # as many as the engine keeps


def _records(portal: Portal) -> list[DownloadRecord]:
    return sorted(portal.api.manager.records.values(), key=lambda r: r.created, reverse=True)


def _rows(portal: Portal) -> list[views.DownloadRow]:
    return [views.download_row(describe(r, events=0)) for r in _records(portal)]


async def downloads_page(request: web.Request) -> web.Response:
    return await _downloads_page(request, form=NewDownload(), errors={})


async def _downloads_page(
    request: web.Request, *, form: NewDownload, errors: Mapping[str, str], status: int = 200
) -> web.Response:
    portal = request.app[PORTAL]
    helpers, hub_note = await _helper_choices(portal)
    return portal.page(
        "downloads.html",
        status=status,
        nav="downloads",
        csrf=request[SESSION].csrf,
        rows=_rows(portal),
        form=form,
        errors=errors,
        helpers=helpers,
        hub_note=hub_note,
        download_dir=str(portal.api.download_dir),
    )


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
        except (ValidationError, SwarmgetError, OSError) as exc:
            errors["form"] = str(exc)
        else:
            record = portal.api.manager.create(spec, body.helpers)
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


async def retry_download(request: web.Request) -> web.Response:
    record = _record(request)
    if not record.state.retryable:  # two runs must not share a part file
        raise web.HTTPConflict(text=f"the download is {record.state.value}: nothing to retry\n")
    again = request.app[PORTAL].api.manager.create(record.spec, record.only_helpers)
    raise web.HTTPSeeOther(f"{PREFIX}/downloads/{again.id}")


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

    async def render() -> tuple[dict[str, str], bool]:
        html = portal.render("parts/download_rows.html", rows=_rows(portal), csrf=csrf)
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
            for part in ("summary", "verification", "piecemap", "sources", "timeline")
        }
        return parts, finished

    return await live_stream(request, DETAILS_INTERVAL, render)
