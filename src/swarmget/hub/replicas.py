"""Hub replicas watching each other, so that nodes leave a dead or hung replica at once.

A node heartbeats one replica every few seconds, so by itself it notices that replica's
death only at its next heartbeat plus that heartbeat's timeout: up to interval + timeout
(5 + 2 s) after the fault. Here every replica tells the others it lives through the shared
database, and a node asks *another* replica to tell it when its own one is gone:

* every ``every`` seconds a replica raises its counter and reads everyone's in one
  transaction (``RegistryStore.beat_replica``: one row per process, ``hub_replicas``) into a
  ``swarmget.core.replicas.ReplicaSightings``, which says which are gone (counter still
  for ``dead_after`` seconds over several reads, or row deleted); a replica that stops
  cleanly deletes its row, and rows of replicas gone for long are deleted by whoever
  notices;
* ``GET /v1/replicas/{replica}/watch`` (signed like any node request) answers a
  ``ReplicaNews`` as soon as ``replica`` is gone, or after ``hold`` seconds when it is not
  (the node asks again), or at once when this replica does not know it (``unknown``: an
  older hub, or a replica of another registry) or is shutting down (``alive``: ask again
  elsewhere). Watching oneself is refused (400).

Every answer to a register or heartbeat names the replica (``replica``), so a node knows
what to ask for; ``swarmget.net.replica_watch`` is the node's side. A killed replica is
noticed ``dead_after`` + a read after the fault, a hung one the same: both well under the
heartbeat interval. The cost: a small write and a read per replica every ``every`` seconds,
and per node one held request on another replica, asked again every ``hold`` seconds
(shorter than the 60 s a reverse proxy such as nginx waits for an answer by default).
Watches are shed first under strain (``swarmget.hub.admission``: they wait for nothing but
news, and a node whose watch is refused falls back to its heartbeat's own timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from swarmget.core.errors import StorageError
from swarmget.core.replicas import ReplicaSightings, ReplicaState
from swarmget.hub.edge import HubRefusal, owned_loop
from swarmget.hub.store import RegistryStore
from swarmget.net.auth import authenticated_node
from swarmget.protocol.hub import REPLICA_ID_PATTERN, ReplicaNews, replica_watch_path

__all__ = ["DEAD_AFTER", "REPLICA_EVERY", "WATCH_HOLD", "HubReplicas", "new_replica_id"]

log = logging.getLogger(__name__)

#: Seconds between a replica's raises (and reads) of the counters.
REPLICA_EVERY = 0.5
#: Seconds a counter stands still before its replica counts as gone.
DEAD_AFTER = 2.0
#: Seconds a watch is held when nothing happens (a node asks again after the answer).
WATCH_HOLD = 50.0
#: Seconds a stopping replica gives the deletion of its row.
FORGET_TIMEOUT = 2.0


def new_replica_id() -> str:
    """A new id for this hub process (``REPLICA_ID_PATTERN``)."""
    return secrets.token_hex(8)


@dataclass(kw_only=True)
class HubReplicas:
    """One replica's side of watching (see module doc); ``clock`` is monotonic seconds."""

    store: RegistryStore
    replica_id: str = field(default_factory=new_replica_id)
    every: float = REPLICA_EVERY
    dead_after: float = DEAD_AFTER
    hold: float = WATCH_HOLD
    clock: Callable[[], float] = time.monotonic
    sightings: ReplicaSightings = field(init=False)
    #: set when the replica of that id is gone (a new event when it is seen alive again)
    _news: dict[str, asyncio.Event] = field(default_factory=dict)
    #: set once the counters were read (watches wait for it: before, all are unknown)
    _read: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False
    _failing: bool = False
    #: watches held now, and replicas found gone since start (``counts``)
    _held: int = 0
    _gone: int = 0

    def __post_init__(self) -> None:
        self.sightings = ReplicaSightings(me=self.replica_id, dead_after=self.dead_after)
        if min(self.every, self.hold) <= 0:
            raise ValueError("every and hold must be positive")

    async def run(self) -> None:
        """Raise our counter and read everyone's every ``every`` seconds, until cancelled;
        then delete our row (best effort), so that watchers hear at once."""
        try:
            while True:
                try:
                    await self.tick()
                except Exception:  # a bug: the hub goes on serving, the next tick tries again
                    log.exception("replica %s: watching the replicas failed", self.replica_id)
                await asyncio.sleep(self.every)
        finally:
            with contextlib.suppress(StorageError, TimeoutError):
                async with asyncio.timeout(FORGET_TIMEOUT):
                    await self.store.forget_replicas([self.replica_id])

    async def tick(self) -> None:
        """One raise and read; a database failure is logged once per run of failures, and
        judges nobody (a replica that cannot read cannot tell who stopped; nor, for
        ``dead_after`` once it reads again, could the others raise their counters)."""
        try:
            beats = await self.store.beat_replica(self.replica_id)
        except StorageError as exc:
            if not self._failing:
                log.warning("replica %s: cannot beat or read replicas: %s", self.replica_id, exc)
            self._failing = True
            return
        now = self.clock()
        if self._failing:  # nobody could raise a counter meanwhile: judge from now on
            log.info("replica %s: replicas readable again", self.replica_id)
            self.sightings.rebase(now)
        self._failing = False
        for replica in self.sightings.read(beats, now):
            self._gone += 1
            log.warning("hub replica %s is gone: telling its watchers", replica)
            self._news.pop(replica, asyncio.Event()).set()
        self._read.set()
        stale = self.sightings.stale(now)
        if stale:
            with contextlib.suppress(StorageError):
                await self.store.forget_replicas(stale)

    def counts(self) -> tuple[int, int, int]:
        """(replicas seen alive, this one included; watches held; replicas found gone):
        the hub's ``/metrics``."""
        return self.sightings.alive(self.clock()), self._held, self._gone

    def closing(self) -> None:
        """The app is shutting down: every held watch is answered now (``alive``: the
        node asks another replica)."""
        self._closing = True
        self._read.set()
        for news in self._news.values():
            news.set()

    async def watch(self, request: web.Request) -> web.Response:
        """``GET /v1/replicas/{replica}/watch`` (see module doc)."""
        authenticated_node(request)  # signed by a member (the middleware checked it)
        replica = request.match_info["replica"]
        if replica == self.replica_id:
            raise HubRefusal("bad_request", "a replica cannot watch itself: ask another one")
        self._held += 1
        try:
            state = await self._wait(replica)
        finally:
            self._held -= 1
        return web.json_response(ReplicaNews(replica=replica, state=state).model_dump(mode="json"))

    async def _wait(self, replica: str) -> ReplicaState:
        """The replica's state once it is gone, ``hold`` is over or we are closing."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.hold):
                await self._read.wait()
                state = self.sightings.state(replica, self.clock())
                if state is ReplicaState.ALIVE and not self._closing:
                    await self._news.setdefault(replica, asyncio.Event()).wait()
        return self.sightings.state(replica, self.clock())

    def add_to(self, app: web.Application) -> None:
        """The watch route, and the counters' loop owned by the app."""
        app.cleanup_ctx.append(owned_loop(self.run))
        pattern = REPLICA_ID_PATTERN.removeprefix("^").removesuffix("$")
        app.router.add_get(replica_watch_path(f"{{replica:{pattern}}}"), self.watch)

        async def on_shutdown(_app: web.Application) -> None:
            self.closing()

        app.on_shutdown.append(on_shutdown)
