"""A node with its admin portal: ``open_node(config)``, and ``run_node`` for ``swarmget node``.

``swarmget.node.daemon.open_node`` starts the node's parts (peer API, user API, hub
membership, downloads) and knows nothing of the web portal, which sits above it; this module
plugs the portal (``swarmget.web.portal``) into the user API's server and runs the whole
until SIGTERM/SIGINT, printing one JSON line with its URLs once it listens (tests and the
demo read it) and writing the node file the CLI finds it by.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from swarmget.net.serve import open_listener
from swarmget.net.signals import serve_until_signalled
from swarmget.node import daemon
from swarmget.node.daemon import Node, NodeConfig
from swarmget.node.statefiles import (
    API_SOCKET,
    GROUP_FILE_MODE,
    NODE_FILE,
    remove_quietly,
    share_with_group,
    write_private,
)
from swarmget.node.user_api import UserApi
from swarmget.web.portal import PREFIX, Portal, make_portal_app, mount_portal
from swarmget.web.remote import PortalAccess

__all__ = ["mount_portal_pages", "open_node", "run_node"]


def mount_portal_pages(
    access: PortalAccess | None = None,
) -> Callable[[web.Application, UserApi, str], Portal]:
    """The admin portal, served under ``/portal/`` of the user API's application."""

    def mount(app: web.Application, api: UserApi, node_id: str) -> Portal:
        portal = Portal(api, node_id=node_id, access=access)
        mount_portal(app, portal)
        return portal

    return mount


@contextlib.asynccontextmanager
async def open_node(config: NodeConfig, access: PortalAccess | None = None) -> AsyncIterator[Node]:
    """Start a node with its portal; see ``swarmget.node.daemon.open_node``. With an
    ``access`` that names a listen address the portal answers there too (``web.remote``);
    ``node.portal_url`` is then that listener's."""
    async with daemon.open_node(config, pages=mount_portal_pages(access)) as node:
        if access is None or access.listen_host is None or node.portal is None:
            yield node
            return
        assert isinstance(node.portal, Portal)
        async with open_remote_portal(node.portal, access, config) as url:
            node.portal.bind_remote(url)
            node.remote_portal_url = f"{url}{PREFIX}/"
            yield node


@contextlib.asynccontextmanager
async def open_remote_portal(
    portal: Portal, access: PortalAccess, config: NodeConfig
) -> AsyncIterator[str]:
    """The portal alone on ``access``'s address (no user API route there); its base URL."""
    assert access.listen_host is not None
    app = web.Application()
    app.add_subapp(PREFIX, make_portal_app(portal))
    async with open_listener(
        app,
        access.listen_host,
        access.listen_port,
        limits=config.listen_limits,
        shutdown_timeout=daemon.SHUTDOWN_GRACE,
        option="`swarmget node --portal-port` ([node] portal_port)",
        ssl_context=access.ssl_context(),
    ) as listening:
        host = listening.host
        shown = f"[{host}]" if ":" in host else host
        yield f"{access.scheme}://{shown}:{listening.port}"


async def run_node(
    config: NodeConfig,
    *,
    announce: Callable[[dict[str, Any]], None],
    access: PortalAccess | None = None,
) -> None:
    """Run a node until SIGTERM/SIGINT; ``announce`` gets its URLs once it listens."""

    def ready(node: Node) -> None:
        announce(
            {
                "node_id": node.node_id,
                "peer_url": node.peer_url,
                "api_url": node.api_url,
                "portal_url": node.remote_portal_url or f"{node.api_url}/portal/",  # no secret
                "pid": os.getpid(),  # may well be a log (the journal)
            }
        )
        _write_node_file(config.state_dir, node)
        if config.api_group_access:  # the group's members find it too
            share_with_group(config.state_dir, NODE_FILE, GROUP_FILE_MODE)
        if node.portal is not None and sys.stderr.isatty():  # a person, not a log
            link = node.portal.login_url()
            print(f"portal login link (one use, 5 minutes): {link}", file=sys.stderr)

    try:
        await serve_until_signalled(open_node(config, access), ready)
    finally:
        remove_quietly(config.state_dir, NODE_FILE)


def _write_node_file(state_dir: Path, node: Node) -> None:
    """That a node runs here, and its download directory. The CLI talks to it on
    ``api.sock`` in the state directory, never at ``api_url`` (shown for people only)."""
    info = {
        "api_url": node.api_url,
        "api_socket": API_SOCKET,
        "node_id": node.node_id,
        "pid": os.getpid(),
        "download_dir": str(node.download_dir),
    }
    write_private(state_dir / NODE_FILE, json.dumps(info).encode())
