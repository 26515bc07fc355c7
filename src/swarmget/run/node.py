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
from swarmget.web.portal import Portal, mount_portal

__all__ = ["mount_portal_pages", "open_node", "run_node"]


def mount_portal_pages(app: web.Application, api: UserApi, node_id: str) -> Portal:
    """The admin portal, served under ``/portal/`` of the user API's application."""
    portal = Portal(api, node_id=node_id)
    mount_portal(app, portal)
    return portal


@contextlib.asynccontextmanager
async def open_node(config: NodeConfig) -> AsyncIterator[Node]:
    """Start a node with its portal; see ``swarmget.node.daemon.open_node``."""
    async with daemon.open_node(config, pages=mount_portal_pages) as node:
        yield node


async def run_node(config: NodeConfig, *, announce: Callable[[dict[str, Any]], None]) -> None:
    """Run a node until SIGTERM/SIGINT; ``announce`` gets its URLs once it listens."""

    def ready(node: Node) -> None:
        announce(
            {
                "node_id": node.node_id,
                "peer_url": node.peer_url,
                "api_url": node.api_url,
                "portal_url": f"{node.api_url}/portal/",  # no login secret: stdout
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
        await serve_until_signalled(open_node(config), ready)
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
