"""The node's local user API: JSON over HTTP, for the CLI (and the portal).

Served twice by the same application: on the Unix socket ``api.sock`` in the node's 0700
state directory (the CLI's only way in: see ``run.remote``) and on 127.0.0.1 (where the
portal lives). Every request carries ``Authorization: Bearer TOKEN``, where the token is in
the node's state directory (``api-token``, 0600, new at every start): another local user
cannot drive the node. Nor reach it at all: every request's client must run as the node's
own user (or root), which the kernel tells (``net.peercred``) — on 127.0.0.1 another local
user could otherwise replay a portal cookie the browser sent to a port of theirs. Routes::

    POST   /v1/downloads              {url, output?, checksums?, force?, restart_if_changed?,
                                       helpers?}  → 201 with the download; 200 with
                                      ``joined: true`` when the node already runs this
                                      request into that output (it is not started twice;
                                      a paused one resumes); 409 when another request
                                      writes that output
    GET    /v1/downloads              every download (this run's and the history's), oldest
                                      first; ?state=done,failed&since=&before=&q= filter
                                      (``protocol.user.DownloadFilter``)
    POST   /v1/downloads/clear-finished   forget every finished download → {"removed": N}
    GET    /v1/downloads/{id}         one download: progress, sources, events, result
                                      (?wait=S: answered when it ends, or after S seconds;
                                      ?events=N: its last N events, 0-500, default 500)
    DELETE /v1/downloads/{id}         cancel it
    POST   /v1/downloads/{id}/pause|resume|retry   the same download, the same id → its JSON
                                      (409 ``wrong_state`` when its state does not allow it)
    POST   /v1/downloads/{id}/remove  {delete_file?} forget one that does not run (409 if it
                                      does), deleting its file too if asked
    GET    /v1/downloads/{id}/events  Server-Sent Events: a "progress" event every
                                      half second, then "end" with the final state
    GET    /v1/status                 this node: downloads, helper streams, quota left
    GET    /v1/peers                  the live peers of this node's group, from the hub
    GET    /v1/settings               the helper settings in force, and where each comes from
    PUT    /v1/settings               {slots?, rate_limit?, daily_quota?, helping_paused?,
                                       reset?} change them at once, kept (``node.settings``)
    POST   /v1/shared-outputs         {path, key} ``get --share-output``: serve a file saved
                                      outside the node's directories to its LAN group →
                                      {kept, refusal?} (``protocol.user.SharedOutput``)

Errors are ``{"error", "code"}`` with the status of the code's row in
``swarmget.protocol.errors.USER_ERRORS`` (a refused download: the usage error's own code).

Sub-applications mounted on the same server authenticate their own requests: the admin
portal (``swarmget.web``, under ``/portal/``) with a session cookie and CSRF tokens.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from swarmget.core.content import ContentKey
from swarmget.core.digests import parse_checksum_spec
from swarmget.core.errors import HubError, SwarmgetError, WrongState
from swarmget.core.scheduler import SchedulerConfig
from swarmget.core.urls import validate_url
from swarmget.engine import DownloadSpec
from swarmget.net.auth import json_error
from swarmget.net.peercred import ConnectionUids
from swarmget.node.downloads import DownloadManager, describe, resolve_destination
from swarmget.node.fleet import FleetFn
from swarmget.node.settings import RuntimeSettings
from swarmget.protocol.errors import USER_ERRORS
from swarmget.protocol.user import (
    CLEAR_FINISHED_PATH,
    DOWNLOADS_PATH,
    SETTINGS_PATH,
    SHARED_OUTPUTS_PATH,
    CreateDownload,
    DownloadAction,
    DownloadFilter,
    Removal,
    RemoveDownload,
    SettingsUpdate,
    SharedOutput,
    ShareOutput,
    ShareRefusal,
)

#: ``get --share-output``: keep the file at that absolute path as that content (the node's
#: ``content_adapters.OutputSharing``), or why not
ShareOutputFn = Callable[[ContentKey, Path], SharedOutput]

SSE_INTERVAL = 0.5
MAX_WAIT = 10.0  # seconds a ``GET /v1/downloads/{id}?wait=S`` may be held at most
MAX_EVENTS = 500  # events in one ``GET /v1/downloads/{id}`` (``?events=N`` asks for fewer)
METRICS_PATH = "/metrics"


class UserApi:
    """State the handlers need; built by the daemon."""

    def __init__(
        self,
        manager: DownloadManager,
        *,
        token: str,
        download_dir: Any,
        stall_timeout: float,
        status: Callable[[], dict[str, Any]],
        peers: Callable[[], Any],
        unix_group_access: bool = False,
        settings: RuntimeSettings | None = None,
        fleet: FleetFn | None = None,
        share_output: ShareOutputFn | None = None,
    ) -> None:
        self.manager = manager
        self.token = token
        self.download_dir = download_dir
        self.stall_timeout = stall_timeout
        self.status = status
        self.peers = peers
        self.allowed_uids = frozenset({os.geteuid(), 0})  # the node's user, and root
        self.connection_uids = ConnectionUids()  # who is at the other end, per connection
        # group access: whoever the kernel let connect to the 0660 socket (in the 0750
        # state directory) is a member of its group; on 127.0.0.1, still the user only
        self.unix_group_access = unix_group_access
        self.settings = settings
        self.fleet = fleet
        self.share_output = share_output

    def spec_from(self, body: CreateDownload) -> DownloadSpec:
        output = resolve_destination(self.download_dir, body.output)
        url = validate_url(body.url)
        if body.output:  # sub/dir/name: create sub/dir inside the download directory
            output.parent.mkdir(parents=True, exist_ok=True)
        return DownloadSpec(
            url=url,
            output=output,
            checksums=tuple(parse_checksum_spec(c) for c in body.checksums),
            force=body.force,
            restart_if_changed=body.restart_if_changed,
            scheduler=SchedulerConfig(stall_timeout=self.stall_timeout),
            verify_sample=body.verify_sample,
            max_size=body.max_size,
        )


API: web.AppKey[UserApi] = web.AppKey("user_api", UserApi)


def _refusal(code: str, message: str) -> web.Response:
    """The user API's error answer: ``code``'s row of ``USER_ERRORS`` gives the status."""
    return json_error(USER_ERRORS.row(code).status, message, code)


def _error(exc: SwarmgetError) -> web.Response:
    """The answer for an error of the tree: its row of ``USER_ERRORS``."""
    return _refusal(USER_ERRORS.for_exception(exc).code, str(exc))


@web.middleware
async def _same_user(request: web.Request, handler: Any) -> web.StreamResponse:
    if not (request.path == METRICS_PATH and request.method == "GET"):  # counters: anyone
        api = request.app[API]
        uid = api.connection_uids.uid(request.transport)
        if uid is None or not (uid in api.allowed_uids or _group_member(api, request)):
            return _refusal("forbidden", "only the node's own user may use its local API")
    result: web.StreamResponse = await handler(request)
    return result


def _group_member(api: UserApi, request: web.Request) -> bool:
    """With group access, a connection on the Unix socket (the kernel checked the
    socket's group permission when it connected)."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    return api.unix_group_access and sock is not None and sock.family == socket.AF_UNIX


@web.middleware
async def _bearer(request: web.Request, handler: Any) -> web.StreamResponse:
    api = request.app[API]
    given = request.headers.get("Authorization", "")
    own_route = len(request.match_info.apps) == 1  # a sub-app (the portal) does its own auth
    if request.path == METRICS_PATH and request.method == "GET":
        own_route = False  # counters only, for Prometheus (the API binds to 127.0.0.1)
    if own_route and not hmac.compare_digest(given.encode(), f"Bearer {api.token}".encode()):
        return _refusal("auth", "missing or wrong API token")
    result: web.StreamResponse = await handler(request)
    return result


async def create_download(request: web.Request) -> web.Response:
    api = request.app[API]
    try:
        body = CreateDownload.model_validate_json(await request.read())
        spec = api.spec_from(body)
        record, joined = api.manager.create_or_join(spec, body.helpers)
    except ValidationError as exc:
        return _invalid(exc)
    except SwarmgetError as exc:
        return _error(exc)
    # joined: the node already ran this very download (200, not 201: nothing was created)
    return web.json_response({**describe(record), "joined": joined}, status=200 if joined else 201)


def _invalid(exc: ValidationError) -> web.Response:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return _refusal("bad_request", f"{field}: {first['msg']}")


async def list_downloads(request: web.Request) -> web.Response:
    api = request.app[API]
    try:
        wanted = DownloadFilter.from_query(request.query)
    except ValidationError as exc:
        return _invalid(exc)
    records = sorted(api.manager.records.values(), key=lambda r: r.created)
    views = (describe(r, events=0) for r in records)
    return web.json_response({"downloads": [v for v in views if wanted.matches(v)]})


async def clear_finished(request: web.Request) -> web.Response:
    return web.json_response({"removed": request.app[API].manager.clear_finished()})


async def act_on_download(request: web.Request) -> web.Response:
    """Pause, resume or retry: the same download goes on under its id."""
    record = _record_or_404(request)
    manager = request.app[API].manager
    action = DownloadAction(request.match_info["action"])  # (the route lists only these)
    act = {
        DownloadAction.PAUSE: manager.pause,
        DownloadAction.RESUME: manager.resume,
        DownloadAction.RETRY: manager.retry,
    }[action]
    try:
        act(record.id)
    except WrongState as exc:
        return _error(exc)
    return web.json_response(describe(record))


async def remove_download(request: web.Request) -> web.Response:
    record = _record_or_404(request)
    api = request.app[API]
    try:
        body = RemoveDownload.model_validate_json(await request.read() or b"{}")
        deleted = api.manager.remove(
            record.id, delete_files=body.delete_file, download_dir=api.download_dir
        )
    except ValidationError as exc:
        return _invalid(exc)
    except WrongState as exc:
        return _error(exc)
    return web.json_response(Removal(id=record.id, deleted=deleted).model_dump(mode="json"))


def _record_or_404(request: web.Request) -> Any:
    record = request.app[API].manager.records.get(request.match_info["id"])
    if record is None:
        raise web.HTTPNotFound(  # USER_ERRORS' not_found row (404)
            text=json.dumps({"error": "no such download", "code": "not_found"}),
            content_type="application/json",
        )
    return record


async def get_download(request: web.Request) -> web.Response:
    """The download; with ``?wait=S`` (0 < S <= ``MAX_WAIT``) not before it ended or S
    seconds passed, whichever comes first: a client following it learns of the end at
    once instead of at its next poll. ``?events=N``: only its last N events (a poller
    that shows progress asks for 0)."""
    record = _record_or_404(request)
    events = MAX_EVENTS
    raw_events = request.query.get("events")
    if raw_events is not None:  # a poller that only wants progress: far less to render
        if not (raw_events.isascii() and raw_events.isdigit()) or int(raw_events) > MAX_EVENTS:
            return _refusal("bad_request", f"events must be a whole number from 0 to {MAX_EVENTS}")
        events = int(raw_events)
    raw = request.query.get("wait")
    if raw is not None:
        try:
            wait = float(raw)
        except ValueError:
            wait = math.nan
        if not 0 < wait <= MAX_WAIT:  # (NaN fails both comparisons)
            return _refusal("bad_request", f"wait must be a number of seconds in (0, {MAX_WAIT}]")
        task = record.task
        if task is not None and not task.done():
            await asyncio.wait([task], timeout=wait)  # (never cancels the download)
    return web.json_response(describe(record, events=events))


async def cancel_download(request: web.Request) -> web.Response:
    record = _record_or_404(request)
    request.app[API].manager.cancel(record.id)
    return web.json_response({"id": record.id, "cancelling": True})


async def download_events(request: web.Request) -> web.StreamResponse:
    record = _record_or_404(request)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    while record.state.active:
        await _sse(resp, "progress", describe(record, events=20))
        await asyncio.sleep(SSE_INTERVAL)
    await _sse(resp, "end", describe(record, events=20))
    return resp


async def _sse(resp: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


async def node_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[API].status())


async def list_peers(request: web.Request) -> web.Response:
    try:
        peers = await request.app[API].peers()
    except HubError as exc:
        return _error(exc)
    return web.json_response({"peers": peers})


def _settings(request: web.Request) -> RuntimeSettings:
    settings = request.app[API].settings
    if settings is None:
        raise web.HTTPNotFound(  # USER_ERRORS' not_found row (404)
            text=json.dumps({"error": "this node has no runtime settings", "code": "not_found"}),
            content_type="application/json",
        )
    return settings


async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(_settings(request).view().model_dump(mode="json"))


async def put_settings(request: web.Request) -> web.Response:
    settings = _settings(request)
    try:
        change = SettingsUpdate.model_validate_json(await request.read())
    except ValidationError as exc:
        return _invalid(exc)
    return web.json_response(settings.update(change).model_dump(mode="json"))


async def share_output(request: web.Request) -> web.Response:
    """``get --share-output``: see ``protocol.user.ShareOutput``."""
    try:
        body = ShareOutput.model_validate_json(await request.read())
    except ValidationError as exc:
        return _invalid(exc)
    path = Path(body.path)
    if not path.is_absolute() or "\x00" in body.path:
        return json_error(400, "the path of a shared output is absolute", "bad_request")
    try:
        key = body.key.key()
    except ValueError as exc:
        return json_error(400, f"bad content key: {exc}", "bad_request")
    keep = request.app[API].share_output
    answer = SharedOutput(kept=False, refusal=ShareRefusal.NODE_REFUSES)
    if keep is not None:
        answer = await asyncio.to_thread(keep, key, path)  # (an fstat, the index file)
    return web.json_response(answer.model_dump(mode="json"))


def make_user_app(api: UserApi) -> web.Application:
    app = web.Application(middlewares=[_same_user, _bearer], client_max_size=64 * 1024)
    app[API] = api
    app.router.add_post(DOWNLOADS_PATH, create_download)
    app.router.add_get(DOWNLOADS_PATH, list_downloads)
    app.router.add_post(CLEAR_FINISHED_PATH, clear_finished)
    actions = "|".join(a.value for a in DownloadAction)
    app.router.add_post(f"/v1/downloads/{{id}}/{{action:{actions}}}", act_on_download)
    app.router.add_post("/v1/downloads/{id}/remove", remove_download)
    app.router.add_get("/v1/downloads/{id}", get_download)
    app.router.add_delete("/v1/downloads/{id}", cancel_download)
    app.router.add_get("/v1/downloads/{id}/events", download_events)
    app.router.add_get("/v1/status", node_status)
    app.router.add_get("/v1/peers", list_peers)
    app.router.add_get(SETTINGS_PATH, get_settings)
    app.router.add_put(SETTINGS_PATH, put_settings)
    app.router.add_post(SHARED_OUTPUTS_PATH, share_output)
    return app
