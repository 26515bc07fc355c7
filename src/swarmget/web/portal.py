"""The admin portal: a browser UI on the node's local address, next to the user API.

``mount_portal(user_app, portal)`` adds it under ``/portal/`` to the user API's application
(the same server, the same 127.0.0.1 port); the user API's bearer check leaves sub-apps to
authenticate their own requests, and the portal's guard does (``access``, ``security``). Pages
are rendered on the server with jinja2 (templates and static files ship in the package: no
CDN, the LAN may be offline) and kept live by Server-Sent Events that carry re-rendered
fragments (``{element id: html}``), which ``portal.js`` swaps in: one rendering path, and
the only script is that swap. Routes, below ``/portal``::

    GET  /                       the downloads (and the form to start one)
    POST /downloads              start one (url, output, checksum, helpers, force ...)
    GET  /downloads/{id}         details: piece map, sources, timeline, verification
    GET  /?state=&since=&until=&q=   the list, filtered (dates are days, both included)
    POST /downloads/{id}/cancel  cancel it
    POST /downloads/{id}/pause|resume|retry   the same download goes on, under its id
    POST /downloads/{id}/remove  forget it (``delete_file=on``: its file goes too)
    POST /downloads/clear-finished   forget every finished download
    GET  /peers                  the live nodes of this group (from the hub)
    GET  /fleet                  every node of the group: downloads, serving, limits, health
    GET  /settings, POST /settings   this node's helper limits and "pause helping"
    GET  /login[?token=]         the login page; a one-time token logs in at once
    POST /login                  log in with the API token
    POST /logout
    GET  /live/downloads[/{id}], /live/peers, /live/fleet    the Server-Sent Events of those pages
    GET  /static/...             CSS and JavaScript

Where each part lives: ``site`` (the ``Portal`` state and its app keys), ``access`` (the
guard, security headers, login and logout), ``download_pages`` and ``peer_pages`` (the
pages and their live updates), ``live`` (the Server-Sent Events loop), ``views`` (what the
pages show, computed from the user API's JSON); this module assembles the application.
"""

from __future__ import annotations

from aiohttp import web

from swarmget.web.access import guard, login_page, login_post, logout, security_headers
from swarmget.web.download_pages import (
    act_on_download,
    cancel_download,
    clear_finished,
    details_page,
    downloads_page,
    live_details,
    live_downloads,
    remove_download,
    start_download,
)
from swarmget.web.fleet_pages import fleet_page, live_fleet
from swarmget.web.peer_pages import live_peers, peers_page
from swarmget.web.security import LOGIN_LINK_TTL
from swarmget.web.settings_pages import save_settings, settings_page
from swarmget.web.site import HERE, PORTAL, PREFIX, Portal

__all__ = ["PORTAL", "PREFIX", "Portal", "make_portal_app", "mount_portal"]


async def _on_shutdown(app: web.Application) -> None:
    app[PORTAL].closing.set()  # end the live streams, or the server waits for them


def make_portal_app(portal: Portal) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[PORTAL] = portal
    app.on_response_prepare.append(security_headers)
    app.on_shutdown.append(_on_shutdown)
    r = app.router
    r.add_get("/", downloads_page, name="downloads")
    r.add_post("/downloads", start_download)
    r.add_get("/downloads/{id}", details_page)
    r.add_post("/downloads/{id}/cancel", cancel_download)
    r.add_post("/downloads/clear-finished", clear_finished)
    r.add_post("/downloads/{id}/{action:pause|resume|retry}", act_on_download)
    r.add_post("/downloads/{id}/remove", remove_download)
    r.add_get("/peers", peers_page)
    r.add_get("/fleet", fleet_page)
    r.add_get("/settings", settings_page)
    r.add_post("/settings", save_settings)
    r.add_get("/login", login_page, name="login")
    r.add_post("/login", login_post, name="login_post")
    r.add_post("/logout", logout)
    r.add_get("/live/downloads", live_downloads)
    r.add_get("/live/downloads/{id}", live_details)
    r.add_get("/live/peers", live_peers)
    r.add_get("/live/fleet", live_fleet)
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
