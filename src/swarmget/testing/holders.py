"""A real in-process node as a LAN holder (fetch once per LAN, #15), for tests.

* ``loopback_config``: the ``NodeConfig`` of a node listening on 127.0.0.2 whose state and
  download directories are ``state/`` and ``dl/`` of a test's directory.
* ``write_servable``: a file a holder may serve (this user's regular file, mode 0644).
* ``HolderReader``: a LAN requester of one node (``open_node``'s ``Node``): it reads ranges
  and piece hashes from the node's peer API through the real, signed holder client
  (``swarmget.net.content_peer``), so every error arrives as the requester would see it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from swarmget.core.content import ContentKey
from swarmget.core.identity import NodeIdentity
from swarmget.core.ranges import ByteRange
from swarmget.net.content_peer import HolderSource, fetch_piece_hashes
from swarmget.net.peer_client import PeerAddress
from swarmget.node.daemon import Node, NodeConfig
from swarmget.protocol.content import PieceHashes

__all__ = ["HolderReader", "loopback_config", "read_range", "write_servable"]


def loopback_config(root: Path, *, secret: bytes, **fields: Any) -> NodeConfig:
    """A node on 127.0.0.2 keeping its state in ``root/state`` and downloads in ``root/dl``;
    ``fields``: any other ``NodeConfig`` field (``daily_quota=``, ``share_output=`` ...)."""
    return NodeConfig(
        secret=secret,
        state_dir=root / "state",
        download_dir=root / "dl",
        listen_host="127.0.0.2",
        **fields,
    )


def write_servable(path: Path, data: bytes) -> Path:
    """Write ``data`` at ``path`` (its directories made as needed), mode 0644: a file of
    this user's that a holder may serve. Returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o644)
    return path


async def read_range(source: HolderSource, rng: ByteRange) -> bytes:
    """All the bytes ``source`` streams for ``rng`` (its errors raised as they come)."""
    async with source.open_range(None, rng) as body:
        return b"".join([chunk async for chunk in body])


@dataclass(frozen=True, kw_only=True)
class HolderReader:
    """A requester signing with ``identity`` and the swarm ``secret``, asking ``holder``."""

    session: aiohttp.ClientSession
    holder: PeerAddress
    secret: bytes
    identity: NodeIdentity

    @classmethod
    def of(
        cls, session: aiohttp.ClientSession, node: Node, secret: bytes, identity: NodeIdentity
    ) -> HolderReader:
        """The reader of ``node``'s peer API (``secret``: the one its config was given)."""
        holder = PeerAddress(node_id=node.node_id, url=node.peer_url)
        return cls(session=session, holder=holder, secret=secret, identity=identity)

    def source(self, key: ContentKey) -> HolderSource:
        """The holder as a download's range source of ``key``."""
        return HolderSource(self.session, self.holder, key, self.secret, self.identity)

    async def read(self, key: ContentKey, rng: ByteRange) -> bytes:
        """``rng`` of ``key``, as the holder serves it (or its typed refusal)."""
        return await read_range(self.source(key), rng)

    async def piece_hashes(self, name: str) -> PieceHashes:
        """The holder's piece hashes of the content named ``name`` (its ``index_name``)."""
        return await fetch_piece_hashes(self.session, self.holder, name, self.secret, self.identity)
