"""The node's parts behind the engine's fetch-once ports (#15, ``engine.sharing``).

* ``ContentIndex``: ``net.content_hub.ContentHubClient`` has that shape already (no adapter;
  ``group_options`` checks it with the type checker).
* ``Holders``: ``LanHolders`` builds a signed ``net.content_peer.HolderSource`` per member.
* ``Holdings``: ``RegistryHoldings`` tells the node's ``HoldingsRegistry`` what a running
  download can serve (its part file and verified ranges, pinned while it runs), and has
  the ``ShareCache`` keep the final file (one budget and LRU for every shared file); a
  download of a content the node already holds whole copies its own file (``OwnCopy``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from swarmget.core.content import ContentKey
from swarmget.core.errors import ContentNotHeld
from swarmget.core.ranges import ByteRange, Chunk, RangeSet
from swarmget.core.share_cache import SharePolicy
from swarmget.engine.sharing import ContentIndex, GroupConfig, GroupOptions
from swarmget.net.content_hub import ContentHubClient
from swarmget.net.content_peer import HolderSource
from swarmget.net.origin import OriginInfo
from swarmget.net.peer_client import PeerAddress
from swarmget.net.signing import NodeIdentity
from swarmget.node.announcer import HoldingsAnnouncer
from swarmget.node.holder import HolderService, open_held
from swarmget.node.holdings import HoldingsRegistry, NotConsented, fingerprint_of
from swarmget.node.quota import DailyQuota
from swarmget.node.share_cache import CACHE_DIR, ShareCache
from swarmget.protocol.content import ContentMember
from swarmget.protocol.user import SharedOutput, ShareRefusal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LanHolders:
    """``engine.sharing.Holders`` over signed node-to-node requests."""

    session: aiohttp.ClientSession
    secret: bytes
    identity: NodeIdentity  # ours, the requester's
    slots: int = 2

    def source(self, member: ContentMember, key: ContentKey) -> HolderSource:
        holder = PeerAddress(node_id=member.node_id, url=member.url, slots=self.slots)
        return HolderSource(self.session, holder, key, self.secret, self.identity)


@dataclass(frozen=True)
class RegistryHoldings:
    """``engine.sharing.Holdings`` over the node's ``HoldingsRegistry``. A file the node may
    not share (outside its directories, unless ``user_asked``: ``--share-output``) is not
    offered (logged, never an error).

    With the node's ``ShareCache`` (``cache``), a finished file is *kept* by the cache: under
    its budget and LRU like every shared file (§7), evicted (withdrawn, and left to the
    user) when others are used more recently. A content the cache keeps whole is not
    replaced by a part file of a new download of it, nor withdrawn when that one fails."""

    registry: HoldingsRegistry
    cache: ShareCache | None = None
    user_asked: bool = False

    def offer(self, key: ContentKey, path: Path, verified: RangeSet) -> None:
        name = key.index_name()
        whole = key.size is not None and verified.contains(ByteRange(0, key.size))
        if self.cache is not None:
            if whole:
                if not self.cache.keep(key, path, user_asked=self.user_asked):
                    log.info("not kept for the LAN: %s", path)
                return
            if self.cache.keeps(name):
                return
        fingerprint = fingerprint_of(os.stat(path)) if whole else None
        try:
            if self.registry.lookup(name) is None:
                self.registry.register(
                    key,
                    path,
                    verified=verified,
                    fingerprint=fingerprint,
                    user_asked=self.user_asked,
                )
            else:
                self.registry.update(name, path=path, verified=verified, fingerprint=fingerprint)
        except (NotConsented, ValueError, OSError) as exc:
            log.info("not offered to the LAN: %s", exc)

    def withdraw(self, key: ContentKey) -> None:
        name = key.index_name()
        if self.cache is None or not self.cache.keeps(name):
            self.registry.unregister(name)

    def pinned(self, key: ContentKey) -> AbstractContextManager[None]:
        return self.registry.pinned(key.index_name())

    def own_copy(self, key: ContentKey) -> OwnCopy | None:
        """The node's finished file of all of ``key`` (fingerprinted when it was kept: a
        download's part file is not one), or None."""
        holding = self.registry.lookup(key.index_name())
        if holding is None or holding.fingerprint is None or key.size is None:
            return None
        if not holding.key.same_content(key) or not holding.holds(ByteRange(0, key.size)):
            return None
        return OwnCopy(self.registry, holding.key)


#: bytes read from the node's own copy at a time
OWN_READ = 1024 * 1024


@dataclass(frozen=True)
class OwnCopy:
    """The range source of ``Holdings.own_copy``: reads the node's own file of ``key``,
    looked up in the registry for every range (an evicted file is not read) and opened as
    the holder route opens it (``holder.open_held``: this user's regular file, no link,
    still the file that was verified). ``ContentNotHeld`` otherwise, or when it is short."""

    registry: HoldingsRegistry
    key: ContentKey
    slots: int = 2
    source_id: str = "own-copy"

    @asynccontextmanager
    async def open_range(
        self, info: OriginInfo, rng: ByteRange
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        holding = self.registry.lookup(self.key.index_name())
        if holding is None or not holding.key.same_content(self.key) or not holding.holds(rng):
            raise ContentNotHeld("this node's own copy is not held any more")
        fd = await asyncio.to_thread(open_held, holding, rng.end)
        try:
            yield _read(fd, rng)
        finally:
            os.close(fd)


async def _read(fd: int, rng: ByteRange) -> AsyncIterator[Chunk]:
    offset = rng.start
    while offset < rng.end:
        data = await asyncio.to_thread(os.pread, fd, min(OWN_READ, rng.end - offset), offset)
        if not data:
            raise ContentNotHeld(f"this node's own copy ended at {offset}")
        yield data
        offset += len(data)


def group_options(
    client: ContentHubClient,
    holders: LanHolders,
    registry: HoldingsRegistry | None,
    *,
    node_id: str,
    keep_as_holder: bool,
    cache: ShareCache | None = None,
    config: GroupConfig | None = None,
) -> GroupOptions:
    """The ``GroupOptions`` of the node's downloads (``Download(group=...)``)."""
    index: ContentIndex = client  # the real client is the port
    return GroupOptions(
        index=index,
        holders=holders,
        node_id=node_id,
        holdings=None if registry is None else RegistryHoldings(registry, cache),
        keep_as_holder=keep_as_holder,
        config=config or GroupConfig(),
    )


#: The LAN allowance's accounting in the state directory (``--lan-daily-quota``).
LAN_QUOTA_FILE = "lan-quota.json"


def open_sharing(
    state_dir: Path,
    download_dir: Path,
    cache_budget: int,
    lan_daily_quota: int | None,
    *,
    outputs: bool = False,
) -> tuple[HoldingsRegistry, ShareCache, HolderService]:
    """The node's holdings registry (roots: the download and cache directories), its share
    cache read back from the state directory (``outputs``: files saved elsewhere may be
    kept when the user asks, ``--share-output``), and the holder routes' service (with the
    daily LAN allowance of ``lan_daily_quota`` bytes, per UTC day as ``--daily-quota``, on
    its own file; None: unlimited)."""
    holdings = HoldingsRegistry([download_dir, state_dir / CACHE_DIR])
    cache = ShareCache(state_dir, holdings, SharePolicy(cache_budget), outputs=outputs)
    cache.load()
    allowance = None
    if lan_daily_quota is not None:
        allowance = DailyQuota(
            state_dir / LAN_QUOTA_FILE,
            lan_daily_quota,
            clock=time.time,  # per UTC day, as the origin's --daily-quota
        )
    return holdings, cache, HolderService(holdings, allowance=allowance)


def group_sharing(
    client: ContentHubClient, holders: LanHolders, cache: ShareCache
) -> tuple[GroupOptions | None, HoldingsAnnouncer | None]:
    """Fetch once per LAN for the node's downloads (``--share-downloads``, with a hub), and
    what announces its kept files to the hub's content index (evictions leave it). None,
    None when sharing is disabled (a cache budget of 0)."""
    if not cache.policy.sharing:
        return None, None
    announcer = HoldingsAnnouncer(client, cache)
    cache.on_evict = announcer.evicted
    options = group_options(
        client,
        holders,
        cache.registry,
        node_id=holders.identity.node_id,
        keep_as_holder=True,
        cache=cache,
    )
    return options, announcer


@dataclass(frozen=True)
class OutputSharing:
    """``POST /v1/shared-outputs`` (``get --share-output``): the share cache keeps a file
    ``swarmget get`` saved outside the node's directories, when the node allows it (its own
    ``--share-output``), and the announcer tells the hub's content index."""

    cache: ShareCache
    announcer: HoldingsAnnouncer | None = None

    def __call__(self, key: ContentKey, path: Path) -> SharedOutput:
        if not self.cache.outputs:
            return SharedOutput(kept=False, refusal=ShareRefusal.NODE_REFUSES)
        if not self.cache.keep(key, path, user_asked=True):
            return SharedOutput(kept=False, refusal=ShareRefusal.NOT_KEPT)
        if self.announcer is not None:
            self.announcer.kept(key.index_name())
        return SharedOutput(kept=True)


def sharing_status(
    cache: ShareCache | None, holder: HolderService | None, announcer: HoldingsAnnouncer | None
) -> dict[str, Any] | None:
    """``swarmget status``'s ``sharing``: what this node keeps and serves to its group."""
    if cache is None or holder is None:
        return None
    allowance = holder.allowance
    return {
        "budget": cache.policy.budget,
        "kept_files": len(cache.names()),
        "kept_bytes": cache.kept_bytes(),
        "lan_bytes_served": holder.stats.lan_bytes_served,
        "lan_daily_quota": None if allowance is None else allowance.limit,
        "lan_quota_left": None if allowance is None else allowance.left(),
        "lan_quota_refused": holder.stats.lan_quota_refused,
        "announced": None if announcer is None else announcer.announced,
    }
