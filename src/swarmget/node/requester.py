"""A requester-only node: downloads with the swarm's helpers, never helps, never registers.

``swarmget get --hub`` runs one in its own process for one download. A full node
(``swarmget.node.daemon``) would start a peer listener, wait for the next whole second (so
that its signature checks are sound, see ``swarmget.net.auth.wait_for_next_second``),
register with the hub and wait for the answer before asking for peers: none of that is
needed by a process that only downloads, and together it cost about a second in front of
the first byte. ``open_requester(config)`` instead:

* makes a throw-away node identity (requests to the hub and to helpers are signed with the
  swarm secret and this key, as any node's);
* opens no listener and does not register: it asks the hub's requester-only query
  (``GET /v1/peers?requester=1``, ``swarmget.protocol.hub``), which lists the live peers of
  the group of the address the hub sees the request come from;
* runs each download exactly as the node daemon does (``swarmget.node.downloads``): it
  starts at once on this host's own origin connections while the hub is asked and the
  listed peers are health-checked, and each helper joins as soon as it answered.

How the hub answered is told once per download as a ``HubReport`` (``on_hub``; none when
the download ended before the hub answered): the peers it listed, or why there are none:
unreachable (``HubOutcome.UNAVAILABLE``, every hub of the list tried), too old to know the
query (``TOO_OLD``: the hub must be upgraded), or refused (``REJECTED``: wrong secret, clock
skew). In each of those cases the download goes on alone (on this host's connections), as a
node's does when its hub is away. The download manager tells it (``find_helpers``), and
keeps it on the download's record, as a node's does (``swarmget.node.hub_report``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp

from swarmget.core.identity import NodeIdentity
from swarmget.net.hub_client import HubPool
from swarmget.net.origin import OriginClient
from swarmget.net.relay_client import RelayClient
from swarmget.node.downloads import DownloadManager, SwarmContext
from swarmget.node.hub_report import HubOutcome, HubReport

__all__ = [
    "HubOutcome",
    "HubReport",
    "Requester",
    "RequesterConfig",
    "open_requester",
]


@dataclass(frozen=True, kw_only=True)
class RequesterConfig:
    secret: bytes
    hub_urls: tuple[str, ...]  # hubs sharing one registry, tried in this order
    source_address: str | None = None  # the local IP every connection is made from
    connections: int = 4
    relay_url: str | None = None
    health_timeout: float = 2.0


@dataclass
class Requester:
    """A running requester-only node (``open_requester``)."""

    node_id: str
    downloads: DownloadManager


def _local(source_address: str | None) -> tuple[str, int] | None:
    return None if source_address is None else (source_address, 0)


@contextlib.asynccontextmanager
async def open_requester(
    config: RequesterConfig, *, on_hub: Callable[[HubReport], None] | None = None
) -> AsyncIterator[Requester]:
    """A requester-only node while the block runs (see module doc); ``on_hub`` hears every
    ``HubReport``. On exit its downloads still running are cancelled (their part files keep
    what was fetched) and its sessions closed."""
    if not config.hub_urls:
        raise ValueError("a requester needs at least one hub URL")
    identity = NodeIdentity.generate()  # a one-off: nobody needs to know us again
    local = _local(config.source_address)
    async with contextlib.AsyncExitStack() as stack:
        # the hub groups us by the address it sees: speak from the chosen source address
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, local_addr=local))
        )
        pool = HubPool(session, config.hub_urls, config.secret, identity, requester_only=True)
        swarm = SwarmContext(
            identity=identity,
            secret=config.secret,
            peer_session=session,
            hub=pool,
            health_timeout=config.health_timeout,
            relay=None
            if config.relay_url is None
            else RelayClient(session, config.relay_url, config.secret, identity),
        )
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        manager = DownloadManager(
            tg, OriginClient(session), swarm, connections=config.connections, on_hub=on_hub
        )
        try:
            yield Requester(node_id=identity.node_id, downloads=manager)
        finally:
            manager.shut_down()
