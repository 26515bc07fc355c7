"""The portal's state (``Portal``: the user API it drives, its sessions, its address, its
templates), the keys handlers find it under, and what every page handler shares."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from yarl import URL

from swarmget import __version__
from swarmget.node.user_api import UserApi
from swarmget.web.remote import PortalAccess
from swarmget.web.security import PortalAuth, Session, allowed_hosts, own_hosts

__all__ = ["HERE", "HUB_TIMEOUT", "PORTAL", "PREFIX", "SESSION", "Portal", "form_field"]

PREFIX = "/portal"
HERE = Path(__file__).parent
HUB_TIMEOUT = 3.0  # seconds a page waits for the hub's list of peers


class Portal:
    """The portal's state: the user API it drives, its sessions, its own address."""

    def __init__(
        self,
        api: UserApi,
        *,
        node_id: str,
        clock: Callable[[], float] = time.time,
        access: PortalAccess | None = None,
    ) -> None:
        self.api = api
        self.node_id = node_id
        self.auth = PortalAuth(api.token)
        self.clock = clock
        self.access = access or PortalAccess()
        self.base_url = ""
        self.hosts: frozenset[str] = frozenset()  # empty until bound: everything is refused
        self._allowed = allowed_hosts(self.access.allowed_hosts)
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
        self.hosts = own_hosts(url.host, url.port) | self._allowed
        self.cookie_name = f"swarmget_portal_{url.port}"  # cookies ignore ports: name them

    def bind_remote(self, server_url: str) -> None:
        """Tell the portal its own listener's address too (``web.remote``)."""
        url = URL(server_url)
        assert url.host is not None
        assert url.port is not None
        self.hosts |= own_hosts(url.host, url.port)

    def request_host(self, request: web.Request) -> str | None:
        """The name the browser asked for: ``Host``, or a trusted proxy's
        ``X-Forwarded-Host`` (its first value)."""
        forwarded = request.headers.get("X-Forwarded-Host")
        if forwarded and self.access.trusts(request.remote):
            return forwarded.split(",")[0].strip()
        return request.headers.get("Host")

    def request_secure(self, request: web.Request) -> bool:
        """Whether the browser speaks HTTPS to us (directly, or to a trusted proxy)."""
        if request.secure:
            return True
        proto = request.headers.get("X-Forwarded-Proto", "")
        return self.access.trusts(request.remote) and proto.split(",")[0].strip() == "https"

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


def form_field(form: Mapping[str, Any], name: str) -> str | None:
    """A form's text field (None when absent or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else None
