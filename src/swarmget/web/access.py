"""Who may use the portal: the guard every request passes, the security headers of every
response, and the login and logout pages (see ``security`` for the rules themselves)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from swarmget.web.security import SAFE_METHODS, Session, csrf_ok, host_ok, origin_ok
from swarmget.web.site import PORTAL, PREFIX, SESSION, form_field

__all__ = ["PUBLIC_ROUTES", "guard", "login_page", "login_post", "logout", "security_headers"]

#: Routes (by name) served without a session.
PUBLIC_ROUTES = frozenset({"login", "login_post", "static"})
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


def _forbidden(reason: str) -> web.Response:
    return web.Response(status=403, text=f"forbidden: {reason}\n")


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    portal = request.app[PORTAL]
    if not host_ok(portal.request_host(request), portal.hosts):
        return _forbidden("this is not one of the portal's addresses")
    unsafe = request.method not in SAFE_METHODS
    headers = request.headers
    origin, referer = headers.get("Origin"), headers.get("Referer")
    if unsafe and not origin_ok(origin, referer, portal.hosts, portal.access.schemes):
        return _forbidden("cross-site request")
    route = request.match_info.route.name
    if route not in PUBLIC_ROUTES:
        session = portal.auth.session(request.cookies.get(portal.cookie_name), portal.clock())
        if session is None:
            if unsafe:
                return _forbidden("not logged in")
            raise web.HTTPSeeOther(f"{PREFIX}/login")
        if unsafe and not csrf_ok(session, form_field(await request.post(), "csrf")):
            return _forbidden("missing or wrong CSRF token: reload the page")
        request[SESSION] = session
    result: web.StreamResponse = await handler(request)
    return result


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.match_info.route.name != "static":
        response.headers["Cache-Control"] = "no-store"


async def login_page(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    token = request.query.get("token")
    if token:
        session = portal.auth.redeem_link(token, portal.clock())
        if session is not None:
            raise _logged_in(request, session)
        return portal.page("login.html", error="This login link was used already or expired.")
    return portal.page("login.html", error=None)


async def login_post(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    token = form_field(await request.post(), "token") or ""
    session = portal.auth.login_with_token(token, portal.clock())
    if session is None:
        return portal.page("login.html", status=401, error="That is not this node's API token.")
    raise _logged_in(request, session)


def _logged_in(request: web.Request, session: Session) -> web.HTTPSeeOther:
    portal = request.app[PORTAL]
    response = web.HTTPSeeOther(f"{PREFIX}/")
    response.set_cookie(
        portal.cookie_name,
        session.id,
        path=PREFIX,
        httponly=True,
        samesite="Strict",
        secure=portal.request_secure(request),  # over HTTPS: never sent in the clear
    )
    return response


async def logout(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    portal.auth.logout(request[SESSION].id)
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(portal.cookie_name, path=PREFIX)
    raise response
