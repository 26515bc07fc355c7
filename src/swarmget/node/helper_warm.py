"""A helper warms its origin connection before the first range request (issue #14).

A requester's signed health check may carry the URL it is about to download
(``protocol.peer.HealthQuery``). A helper that would serve it (not draining nor paused, a
slot free, quota left) opens a connection to that origin through its own origin session
(``OriginClient.warm``: TCP, and TLS for https; nothing is sent) and leaves it in the pool.
The first ``POST /v1/range`` for that origin waits for it if it is still being opened
(``ready``), so that its ``GET`` takes it rather than opening one more; the handshake then
began a LAN round trip or so earlier (the health answer, the requester's join). It goes
through the same SSRF guard as every helper fetch (a refused target is logged here and told
to nobody), bounded in time (``WARM_TIMEOUT``), one at a time per origin and at most
``MAX_WARMING`` at once; the health answer never waits for it.
The tasks are owned by the peer app (``running``, an ``app.cleanup_ctx`` entry): cancelled
and awaited when it stops.

**Leads.** A health check may also name the first range the requester will ask of this
helper (``HealthQuery.lead``, at most ``MAX_LEAD`` bytes), sent before the requester's own
probe has pinned the file. The warmed connection then asks the origin for it at once
(``OriginClient.open_lead``: no If-Range, nothing being pinned yet) and the 206's head is
kept, its body unread (what the origin sends meanwhile waits in the socket: at most the
lead's length), for ``WARM_KEEP`` seconds. The range request of the same requester for the
same URL that starts where the lead does takes it (``claim``), waiting for its head if it
is still on its way; its bytes are then served only after the very checks a range answer
passes against what the requester pinned (``OriginClient.open_lead_range``; a lead that
fails them is closed and the range fetched as usual). So the helper's first bytes leave
the origin one round trip earlier: the requester's probe and the helper's first request
overlap. A lead nobody claims is closed (``lead_unused``); one lead per origin at a time,
like warm-ups, and only when the node would serve a range now.

**Spares.** A requester opens up to a helper's slots streams to it at once, and on a first
download from an origin each of them but the first would connect after its range was asked
(a round trip). So a warm-up also opens up to ``MAX_SPARES`` more connections (the slots
free besides the warm-up's, one warm-up's spares per origin at a time), held by a task of
their own: a range request that does not take the warm-up's connection or the lead
(``ready``) puts one in the pool just before it asks, and those not taken within
``WARM_KEEP`` of being opened are closed (a requester that died leaves none open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from swarmget.core.errors import ForbiddenTarget, InvalidURL, SwarmgetError
from swarmget.core.ranges import ByteRange
from swarmget.core.urls import origin_of, redact_url, validate_url
from swarmget.net.aio_transport import HeldConnection
from swarmget.net.origin import LeadRange
from swarmget.node.helper_service import HelperService
from swarmget.node.quota import DailyQuota

__all__ = ["MAX_SPARES", "MAX_WARMING", "WARM_KEEP", "WARM_TIMEOUT", "Lead", "OriginWarmer"]

log = logging.getLogger(__name__)

#: Seconds a warm-up (connect, TLS, HEAD) may take; then it is given up.
WARM_TIMEOUT = 5.0
#: Seconds a warmed connection waits for a range request to claim it; then it is closed.
#: A requester asks right after its health checks (its own probe's round trips to the
#: origin in between), so this is several times what it takes.
WARM_KEEP = 1.0
#: Connections a warm-up opens besides the first, at most (for the requester's other
#: streams to this helper: ``SPARES`` = its default slots - 1).
MAX_SPARES = 2
#: Warm-ups running at once at most (one per origin).
MAX_WARMING = 4


@dataclass
class Lead:
    """A lead asked of the origin for ``requester``: its answer once it came (held by the
    warm-up until ``claim`` hands it to a range request: ``taken``), whether its claimer
    gave up waiting for it, and the daily quota set aside for it (``reserved`` bytes: the
    origin may send that much before anyone reads it)."""

    requester: str
    url: str
    range: ByteRange
    quota: DailyQuota | None = None
    reserved: int = 0
    answer: LeadRange | None = None
    taken: LeadRange | None = None
    abandoned: bool = False
    finished: bool = False

    def release(self, *, fetched: bool) -> None:
        """Settle the quota set aside (once): charged whole if its bytes may have come and
        nobody forwarded them (``fetched``), else given back."""
        if self.quota is not None and self.reserved:
            self.quota.settle(self.reserved, self.reserved if fetched else 0)
        self.reserved = 0

    async def drop(self, *, fetched: bool = True) -> None:
        answer, self.answer = self.answer, None
        if answer is not None:
            await answer.aclose()
        self.release(fetched=fetched)


class OriginWarmer:
    """Fire-and-forget origin warm-ups, owned by the peer app (``running``)."""

    def __init__(
        self,
        service: HelperService,
        *,
        timeout: float = WARM_TIMEOUT,
        keep: float = WARM_KEEP,
        max_in_flight: int = MAX_WARMING,
    ) -> None:
        self._service = service
        self._timeout = timeout
        self._keep = keep
        self._max = max_in_flight
        self._tasks: dict[tuple[str, str, int], asyncio.Task[None]] = {}
        self._claimed: dict[tuple[str, str, int], asyncio.Event] = {}  # set: a range takes it
        self._leads: dict[tuple[str, str, int], Lead] = {}  # the warm-ups that ask a lead
        #: connections opened besides the first, held until a range request takes one
        self._spares: dict[tuple[str, str, int], list[HeldConnection]] = {}
        self._spare_tasks: dict[tuple[str, str, int], asyncio.Task[None]] = {}
        self._open = False
        self._stats = service.stats  # counted there: warm_started, warm_done ...

    def would_serve(self) -> bool:
        """Whether a range request now would be admitted as far as this node's own state
        tells (a requester's fair share aside)."""
        service = self._service
        if service.draining or service.paused or service.active() >= service.limits.slots:
            return False
        return service.quota is None or service.quota.left() > 0

    def warm(self, url: str, *, requester: str = "", lead: ByteRange | None = None) -> bool:
        """Start warming ``url``'s origin unless the node would not serve it, the URL is
        not one a helper fetches, that origin is being warmed already or ``MAX_WARMING``
        are. With ``lead``, the connection then asks for those bytes of ``url`` for
        ``requester`` (see "Leads" in the module docstring). True when started. Never
        blocks, never raises for the URL."""
        try:
            validate_url(url)
        except InvalidURL:
            return False
        key = origin_of(url)
        if not self._open or key in self._tasks or len(self._tasks) >= self._max:
            return False
        if not self.would_serve():
            return False
        claimed = self._claimed[key] = asyncio.Event()
        entry = None
        quota = self._service.quota
        if lead is not None and not lead.is_empty():
            if quota is None or quota.try_reserve(lead.length):
                entry = Lead(requester, url, lead, quota, 0 if quota is None else lead.length)
                self._leads[key] = entry
                self._stats.lead_started += 1
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._warm(url, claimed, entry), name="warm origin")
        service = self._service
        spares = min(MAX_SPARES, service.limits.slots - service.active() - 1)
        if spares > 0 and key not in self._spare_tasks:
            spare_task = loop.create_task(self._keep_spares(url, spares), name="warm spares")
            self._spare_tasks[key] = spare_task
            spare_task.add_done_callback(lambda _t: self._spare_tasks.pop(key, None))
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._forget(key))
        self._stats.warm_started += 1
        return True

    def _forget(self, key: tuple[str, str, int]) -> None:
        self._tasks.pop(key, None)
        self._claimed.pop(key, None)
        self._leads.pop(key, None)

    async def claim(self, requester: str, url: str, rng: ByteRange) -> Lead | None:
        """The lead asked for ``requester`` of ``url`` when ``rng`` starts where it does
        (the first claim only), its head awaited if still on its way (at most
        ``WARM_TIMEOUT``); its answer is then the caller's (``taken``: read it with
        ``OriginClient.open_lead_range``) until it calls ``finish``. None: no such lead, or
        it failed."""
        key = origin_of(url)
        entry, task, claimed = self._leads.get(key), self._tasks.get(key), self._claimed.get(key)
        if entry is None or task is None or claimed is None or claimed.is_set():
            return None
        if (entry.requester, entry.url, entry.range.start) != (requester, url, rng.start):
            return None
        claimed.set()
        try:
            await asyncio.wait([task])  # the warm-up is not cancelled if this request is
        except asyncio.CancelledError:
            entry.abandoned = True  # the warm-up drops it, or, if it is over, we do
            if task.done():
                await entry.drop()
            raise
        entry.taken, entry.answer = entry.answer, None
        return None if entry.taken is None else entry

    async def finish(self, lead: Lead) -> None:
        """The range request that claimed ``lead`` is done with it (once): counted as
        served or not, closed, its quota settled (what it served, the stream charged)."""
        if lead.finished:
            return
        lead.finished = True
        answer, lead.taken = lead.taken, None
        used = answer is not None and answer.used
        if used:
            self._stats.lead_used += 1
        else:
            self._stats.lead_unfit += 1
        if answer is not None:
            await answer.aclose()  # (idempotent: open_lead_range closed it when it ran)
        lead.release(fetched=not used)

    async def ready(self, url: str) -> None:
        """Called by a range request for (validated) ``url`` before it fetches: the first
        one for an origin being warmed claims that connection and waits until it is in the
        pool (or the warm-up failed, at most ``WARM_TIMEOUT``), so that it takes it; any
        other goes on at once."""
        key = origin_of(url)
        task = self._tasks.get(key)
        claimed = self._claimed.get(key)
        if task is None or claimed is None or claimed.is_set() or key in self._leads:
            spares = self._spares.get(key)  # (kept by their own task: see ``_keep_spares``)
            if spares:  # one of the warm-up's other connections: into the pool, for us
                spares.pop().release()
                self._stats.warm_spares_used += 1
            return  # (a lead's warm-up spends its first connection on the lead)
        claimed.set()
        await asyncio.wait([task])  # the warm-up is not cancelled if this request is

    async def _keep_spares(self, url: str, count: int) -> None:
        """Open ``count`` more connections to ``url``'s origin beside the warm-up's and hold
        them for the range requests after the first (``ready`` hands one over); those not
        taken within ``WARM_KEEP`` of being opened are closed, as the warm-up's own is."""
        key = origin_of(url)
        loop = asyncio.get_running_loop()
        opening = [
            loop.create_task(self._service.origin.warm(url), name="warm a spare")
            for _ in range(count)
        ]
        held = self._spares.setdefault(key, [])
        try:
            for next_done in asyncio.as_completed(opening, timeout=self._timeout):
                try:
                    held.append(await next_done)
                except SwarmgetError:
                    continue  # (the range requests will meet what is wrong, or not)
                self._stats.warm_spares += 1  # (``ready`` may take it at once)
            deadline = loop.time() + self._keep
            while held and loop.time() < deadline:  # noqa: ASYNC110 (taken by ``ready``)
                await asyncio.sleep(min(0.05, deadline - loop.time()))
        except TimeoutError:
            pass  # (as_completed: the rest were not opened in time)
        finally:
            for task in opening:
                task.cancel()
            for result in await asyncio.gather(*opening, return_exceptions=True):
                if isinstance(result, HeldConnection) and result not in held:
                    result.close()  # opened, never handed to ``held``
            for spare in self._spares.pop(key, []):
                spare.close()
            self._stats.warm_spares_unused += len(held)

    async def _warm(self, url: str, claimed: asyncio.Event, lead: Lead | None) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                held = await self._service.origin.warm(url)
                if lead is not None:
                    held.release()  # the lead's request takes it
                    lead.answer = await self._service.origin.open_lead(url, lead.range)
        except ForbiddenTarget as exc:
            if lead is not None:
                await lead.drop(fetched=False)
            self._stats.warm_refused += 1
            self._stats.warm_failed += 1
            log.warning("refused to warm a connection: %s", exc)
            return
        except (SwarmgetError, TimeoutError) as exc:
            self._stats.warm_failed += 1
            if lead is not None:
                await lead.drop(fetched=False)
            log.info("warming a connection to %s failed: %s", redact_url(url), exc)
            return
        except Exception:  # a bug here must not outlive the task unseen
            if lead is not None:
                await lead.drop(fetched=False)
            self._stats.warm_failed += 1
            log.exception("warming a connection to %s failed", redact_url(url))
            return
        self._stats.warm_done += 1
        if lead is not None:
            await self._keep_lead(lead, claimed)
            return
        try:
            async with asyncio.timeout(self._keep):
                await claimed.wait()
        except TimeoutError:
            self._stats.warm_unused += 1
            held.close()
        except BaseException:  # cancelled: the app stops
            held.close()
            raise
        else:
            held.release()

    async def _keep_lead(self, lead: Lead, claimed: asyncio.Event) -> None:
        """Keep ``lead``'s answer until a range claims it (``claim`` takes it then) or
        ``WARM_KEEP`` passed (closed)."""
        if lead.answer is None:
            self._stats.lead_unusable += 1
            lead.release(fetched=False)
            return
        try:
            if not lead.abandoned:
                async with asyncio.timeout(self._keep):
                    await claimed.wait()
        except TimeoutError:
            self._stats.lead_unused += 1
            await lead.drop()
        except BaseException:  # cancelled: the app stops
            await lead.drop()
            raise
        if lead.abandoned:  # its claimer gave up waiting: nobody else will read it
            self._stats.lead_unused += 1
            await lead.drop()

    @contextlib.asynccontextmanager
    async def running(self, _app: web.Application) -> AsyncIterator[None]:
        """An ``app.cleanup_ctx`` entry: warm-ups start while the app runs and are
        cancelled and awaited when it stops."""
        self._open = True
        try:
            yield
        finally:
            self._open = False
            tasks = [*self._tasks.values(), *self._spare_tasks.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
