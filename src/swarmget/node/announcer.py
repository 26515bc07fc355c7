"""The node's kept files in the hub's content index (fetch once per LAN, #15, §7).

A node that keeps files for its group (``node.share_cache``) tells the hub's content index
it holds them, so that a later requester finds it: ``join`` as a holder (``fetching`` and
``can_fetch`` False, ``have`` the whole file), by ``index_name`` only (never the URL).

* When: at every new registration with a hub (the node started, the hub forgot it, it
  failed over to another replica that registered it) the kept files are announced, most
  recently used first, at most ``MAX_ANNOUNCED`` (the hub's per-node bound). The hub's
  index is memory: a hub that restarts with its registry intact forgets the holders
  without asking the node to register again, so every ``CHECK_EVERY`` seconds one kept
  content is asked about (an empty ``news``); ``NotAContentMember`` → announce all again.
* A file kept outside a download (``kept``: ``get --share-output``) joins at once.
* An evicted file leaves the index (``evicted``: the share cache's ``on_evict`` hook)
  before the next announcement.
* Hub errors are logged and dropped: the next registration or check announces again.

``registered`` and ``evicted`` never block (they are called from the membership loop and
from the share cache); ``run`` is the node's owned task doing the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from swarmget.core.errors import HubError, NotAContentMember
from swarmget.engine.sharing import ContentIndex
from swarmget.node.share_cache import ShareCache
from swarmget.protocol.content import ContentNews, JoinContent

__all__ = ["CHECK_EVERY", "MAX_ANNOUNCED", "HoldingsAnnouncer"]

log = logging.getLogger(__name__)

#: Kept contents announced at most (the hub keeps 64 contents per node).
MAX_ANNOUNCED = 64
#: Seconds between two checks that the index still knows us as a holder.
CHECK_EVERY = 30.0
#: Rounds ``run`` makes at most (a bound, not a plan: years of checks).
MAX_ROUNDS = 10_000_000


class HoldingsAnnouncer:
    """Announces the share cache's files to the content index; see the module docstring."""

    def __init__(
        self, index: ContentIndex, cache: ShareCache, *, check_every: float = CHECK_EVERY
    ) -> None:
        self._index, self._cache = index, cache
        self._check_every = check_every
        self._wake = asyncio.Event()
        self._registration: object | None = None
        self._announce = False
        self._leaving: list[str] = []
        self._joining: list[str] = []
        #: joins sent as a holder, and leaves sent for evicted files (for status and tests)
        self.announced = 0
        self.withdrawn = 0

    def registered(self, registration: object | None) -> None:
        """The membership's registration now (None: not registered). A new one announces."""
        if registration is not None and registration is not self._registration:
            self._announce = True
            self._wake.set()
        self._registration = registration

    def kept(self, name: str) -> None:
        """The share cache kept ``name`` outside a download (``get --share-output``)."""
        self._joining.append(name)
        self._wake.set()

    def evicted(self, name: str) -> None:
        """The share cache evicted ``name``: it leaves the index."""
        self._leaving.append(name)
        self._wake.set()

    async def run(self) -> None:
        for _ in range(MAX_ROUNDS):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_every):
                    await self._wake.wait()
            checking = not self._wake.is_set()
            self._wake.clear()
            await self._leave_evicted()
            if self._registration is None:
                continue
            joining, self._joining = self._joining, []
            await self._join_names(joining)
            if checking and not self._announce:
                self._announce = await self._forgotten()
            if self._announce:
                self._announce = False
                await self._announce_all()

    async def _leave_evicted(self) -> None:
        while self._leaving:
            name = self._leaving.pop(0)
            if self._cache.keeps(name):  # kept again since
                continue
            try:
                await self._index.leave(name, keep_as_holder=False)
                self.withdrawn += 1
            except HubError as exc:  # not a member, the hub away: nothing to withdraw
                log.debug("content %s: leaving the index: %s", name[:12], exc)

    async def _forgotten(self) -> bool:
        """Whether the index forgot that we hold our most recently used kept file."""
        for name in self._cache.names()[:1]:
            size = self._cache.size_of(name)
            if size is None:
                return False
            try:
                await self._index.news(name, ContentNews(), size=size)
            except NotAContentMember:
                log.info("the hub's content index forgot our kept files: announcing them again")
                return True
            except HubError as exc:
                log.debug("content %s: checking the index: %s", name[:12], exc)
        return False

    async def _announce_all(self) -> None:
        await self._join_names(self._cache.names()[:MAX_ANNOUNCED])

    async def _join_names(self, names: list[str]) -> None:
        for name in names:
            size = self._cache.size_of(name)
            if size is None or size <= 0:
                continue
            body = JoinContent(size=size, have=[(0, size)], fetching=False, can_fetch=False)
            try:
                await self._index.join(name, body)
            except HubError as exc:
                log.warning("announcing kept content %s to the hub: %s", name[:12], exc)
                return
            self.announced += 1
