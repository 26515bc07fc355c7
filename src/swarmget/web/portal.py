"""The admin portal: a browser UI on the node's local address, next to the user API.

``mount_portal(user_app, portal)`` adds it under ``/portal/`` to the user API's application
(the same server, the same 127.0.0.1 port); the user API's bearer check leaves sub-apps to
authenticate their own requests, and the portal's ``_guard`` does (see ``security``). Pages
are rendered on the server with jinja2 (templates and static files ship in the package: no
CDN, the LAN may be offline) and kept live by Server-Sent Events that carry re-rendered
fragments (``{element id: html}``), which ``portal.js`` swaps in: one rendering path, and
the only script is that swap. Routes, below ``/portal``::

    GET  /                       the downloads (and the form to start one)
    POST /downloads              start one (url, output, checksum, helpers, force ...)
    GET  /downloads/{id}         details: piece map, sources, timeline, verification
    POST /downloads/{id}/cancel  cancel it
    POST /downloads/{id}/retry   start the same request again
    GET  /peers                  the live nodes of this group (from the hub)
    GET  /login[?token=]         the login page; a one-time token logs in at once
    POST /login                  log in with the API token
    POST /logout
    GET  /live/downloads[/{id}], /live/peers     the Server-Sent Events of those pages
    GET  /static/...             CSS and JavaScript
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy
from pydantic import ValidationError
from yarl import URL

from swarmget import __version__
from swarmget.core.auth import is_valid_node_id
from swarmget.core.digests import parse_checksum_spec
from swarmget.core.errors import HubError, SwarmgetError
from swarmget.core.lifecycle import DownloadState
from swarmget.core.urls import validate_url
from swarmget.node.downloads import DownloadRecord, describe, resolve_destination
from swarmget.node.user_api import UserApi
from swarmget.protocol.user import CreateDownload
from swarmget.web import views
from swarmget.web.security import (
    LOGIN_LINK_TTL,
    SAFE_METHODS,
    PortalAuth,
    Session,
    csrf_ok,
    host_ok,
    origin_ok,
    own_hosts,
)

PREFIX = "/portal"
HERE = Path(__file__).parent
LIST_INTERVAL = 1.0  # seconds between live updates of the downloads list
DETAILS_INTERVAL = 0.5
PEERS_INTERVAL = 2.0
HUB_TIMEOUT = 3.0
DETAIL_EVENTS = 2000  # as many as the engine keeps
_PUBLIC = frozenset({"login", "login_post", "static"})
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


class Portal:
    """The portal's state: the user API it drives, its sessions, its own address."""

    def __init__(
        self, api: UserApi, *, node_id: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.api = api
        self.node_id = node_id
        self.auth = PortalAuth(api.token)
        self.clock = clock
        self.base_url = ""
        self.hosts: frozenset[str] = frozenset()  # empty until bound: everything is refused
        self.cookie_name = "swarmget_portal"
        self.closing = asyncio.Event()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def bind(self, server_url: str) -> None:
        """Tell the portal where it is served (``http://host:port``, once listening)."""
        url = URL(server_url)
        assert url.host is not None
        assert url.port is not None
        self.base_url = f"{server_url.rstrip('/')}{PREFIX}"
        self.hosts = own_hosts(url.host, url.port)
        self.cookie_name = f"swarmget_portal_{url.port}"  # cookies ignore ports: name them

    def login_url(self) -> str:
        """A one-time login link (see ``security``)."""
        return f"{self.base_url}/login?token={self.auth.login_link(self.clock())}"

    def render(self, name: str, **context: Any) -> str:
        return self.templates.get_template(name).render(prefix=PREFIX, **context)

    def page(self, name: str, *, status: int = 200, nav: str = "", **context: Any) -> web.Response:
        html = self.render(name, node_id=self.node_id, version=__version__, nav=nav, **context)
        return web.Response(text=html, status=status, content_type="text/html")


PORTAL: web.AppKey[Portal] = web.AppKey("portal", Portal)
SESSION: web.RequestKey[Session] = web.RequestKey("portal_session", Session)


# --- the guard -----------------------------------------------------------------------------------


def _forbidden(reason: str) -> web.Response:
    return web.Response(status=403, text=f"forbidden: {reason}\n")


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    portal = request.app[PORTAL]
    if not host_ok(request.headers.get("Host"), portal.hosts):
        return _forbidden("this is not one of the portal's addresses")
    unsafe = request.method not in SAFE_METHODS
    headers = request.headers
    if unsafe and not origin_ok(headers.get("Origin"), headers.get("Referer"), portal.hosts):
        return _forbidden("cross-site request")
    route = request.match_info.route.name
    if route not in _PUBLIC:
        session = portal.auth.session(request.cookies.get(portal.cookie_name), portal.clock())
        if session is None:
            if unsafe:
                return _forbidden("not logged in")
            raise web.HTTPSeeOther(f"{PREFIX}/login")
        if unsafe and not csrf_ok(session, _field(await request.post(), "csrf")):
            return _forbidden("missing or wrong CSRF token: reload the page")
        request[SESSION] = session
    result: web.StreamResponse = await handler(request)
    return result


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.match_info.route.name != "static":
        response.headers["Cache-Control"] = "no-store"


def _field(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


# --- login ---------------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    token = request.query.get("token")
    if token:
        session = portal.auth.redeem_link(token, portal.clock())
        if session is not None:
            raise _logged_in(portal, session)
        return portal.page("login.html", error="This login link was used already or expired.")
    return portal.page("login.html", error=None)


async def login_post(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    token = _field(await request.post(), "token") or ""
    session = portal.auth.login_with_token(token, portal.clock())
    if session is None:
        return portal.page("login.html", status=401, error="That is not this node's API token.")
    raise _logged_in(portal, session)


def _logged_in(portal: Portal, session: Session) -> web.HTTPSeeOther:
    response = web.HTTPSeeOther(f"{PREFIX}/")
    response.set_cookie(
        portal.cookie_name, session.id, path=PREFIX, httponly=True, samesite="Strict"
    )
    return response


async def logout(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    portal.auth.logout(request[SESSION].id)
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(portal.cookie_name, path=PREFIX)
    raise response


# --- downloads -----------------------------------------------------------------------------------


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
            url=(_field(form, "url") or "").strip(),
            output=(_field(form, "output") or "").strip(),
            checksum=(_field(form, "checksum") or "").strip(),
            helpers=tuple(h for h in form.getall("helpers", []) if isinstance(h, str)),
            force=_field(form, "force") == "on",
            restart_if_changed=_field(form, "restart_if_changed") == "on",
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
        if values.output and output.is_file() and not values.force:
            errors["output"] = f"{values.output} exists: tick “overwrite” to replace it"
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


# --- peers ---------------------------------------------------------------------------------------


async def _peer_rows(portal: Portal) -> tuple[list[views.PeerRow], str | None]:
    status = portal.api.status()
    own = views.self_row(status, address=str(status.get("peer_url", "")).removeprefix("http://"))
    try:
        async with asyncio.timeout(HUB_TIMEOUT):
            peers = await portal.api.peers()
    except (HubError, TimeoutError) as exc:
        return [own], f"the hub cannot be reached ({exc or 'timed out'})"
    now = portal.clock()
    rows = sorted((views.peer_row(p, now=now) for p in peers), key=lambda r: r.node_id)
    note = None if rows else "no other node of this group is online (or there is no hub)"
    return [own, *rows], note


async def peers_page(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    rows, note = await _peer_rows(portal)
    return portal.page("peers.html", nav="peers", csrf=request[SESSION].csrf, rows=rows, note=note)


# --- live updates (Server-Sent Events) -----------------------------------------------------------

Render = Callable[[], Awaitable[tuple[dict[str, str], bool]]]


async def _live(request: web.Request, interval: float, render: Render) -> web.StreamResponse:
    """Send ``update`` events (``{element id: html}``) every ``interval``; ``end`` when done.

    Stops when the client leaves, the session ends or the node shuts down.
    """
    portal = request.app[PORTAL]
    session_id = request[SESSION].id
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        while portal.auth.session(session_id, portal.clock()) is not None:
            parts, final = await render()
            event = "end" if final else "update"
            await resp.write(f"event: {event}\ndata: {json.dumps(parts)}\n\n".encode())
            if final:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await portal.closing.wait()
            if portal.closing.is_set():
                break
    return resp


async def live_downloads(request: web.Request) -> web.StreamResponse:
    portal = request.app[PORTAL]
    csrf = request[SESSION].csrf

    async def render() -> tuple[dict[str, str], bool]:
        html = portal.render("parts/download_rows.html", rows=_rows(portal), csrf=csrf)
        return {"downloads-body": html}, False

    return await _live(request, LIST_INTERVAL, render)


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

    return await _live(request, DETAILS_INTERVAL, render)


async def live_peers(request: web.Request) -> web.StreamResponse:
    portal = request.app[PORTAL]

    async def render() -> tuple[dict[str, str], bool]:
        rows, note = await _peer_rows(portal)
        return {"peers-body": portal.render("parts/peer_rows.html", rows=rows, note=note)}, False

    return await _live(request, PEERS_INTERVAL, render)


# --- the application -----------------------------------------------------------------------------


async def _on_shutdown(app: web.Application) -> None:
    app[PORTAL].closing.set()  # end the live streams, or the server waits for them


def make_portal_app(portal: Portal) -> web.Application:
    app = web.Application(middlewares=[_guard])
    app[PORTAL] = portal
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_on_shutdown)
    r = app.router
    r.add_get("/", downloads_page, name="downloads")
    r.add_post("/downloads", start_download)
    r.add_get("/downloads/{id}", details_page)
    r.add_post("/downloads/{id}/cancel", cancel_download)
    r.add_post("/downloads/{id}/retry", retry_download)
    r.add_get("/peers", peers_page)
    r.add_get("/login", login_page, name="login")
    r.add_post("/login", login_post, name="login_post")
    r.add_post("/logout", logout)
    r.add_get("/live/downloads", live_downloads)
    r.add_get("/live/downloads/{id}", live_details)
    r.add_get("/live/peers", live_peers)
    r.add_static("/static", HERE / "static", name="static")
    return app


def mount_portal(user_app: web.Application, portal: Portal) -> None:
    """Serve ``portal`` under ``/portal/`` of the user API's application, and add the user
    API's ``POST /v1/portal-link`` (bearer token, like every user API route): a fresh
    one-time login link, for ``swarmget portal``."""
    user_app.add_subapp(PREFIX, make_portal_app(portal))

    async def portal_link(request: web.Request) -> web.Response:
        return web.json_response({"url": portal.login_url(), "expires_in": LOGIN_LINK_TTL})

    user_app.router.add_post("/v1/portal-link", portal_link)
