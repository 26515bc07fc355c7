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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from swarmget.core.errors import ForbiddenTarget, InvalidURL, SwarmgetError
from swarmget.core.urls import origin_of, redact_url, validate_url
from swarmget.node.helper_service import HelperService

__all__ = ["MAX_WARMING", "WARM_KEEP", "WARM_TIMEOUT", "OriginWarmer"]

log = logging.getLogger(__name__)

#: Seconds a warm-up (connect, TLS, HEAD) may take; then it is given up.
WARM_TIMEOUT = 5.0
#: Seconds a warmed connection waits for a range request to claim it; then it is closed.
#: A requester asks right after its health checks (its own probe's round trips to the
#: origin in between), so this is several times what it takes.
WARM_KEEP = 1.0
#: Warm-ups running at once at most (one per origin).
MAX_WARMING = 4


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
        self._open = False
        self._stats = service.stats  # counted there: warm_started, warm_done ...

    def would_serve(self) -> bool:
        """Whether a range request now would be admitted as far as this node's own state
        tells (a requester's fair share aside)."""
        service = self._service
        if service.draining or service.paused or service.active() >= service.limits.slots:
            return False
        return service.quota is None or service.quota.left() > 0

    def warm(self, url: str) -> bool:
        """Start warming ``url``'s origin unless the node would not serve it, the URL is
        not one a helper fetches, that origin is being warmed already or ``MAX_WARMING``
        are. True when started. Never blocks, never raises for the URL."""
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
        task = asyncio.get_running_loop().create_task(self._warm(url, claimed), name="warm origin")
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._forget(key))
        self._stats.warm_started += 1
        return True

    def _forget(self, key: tuple[str, str, int]) -> None:
        self._tasks.pop(key, None)
        self._claimed.pop(key, None)

    async def ready(self, url: str) -> None:
        """Called by a range request for (validated) ``url`` before it fetches: the first
        one for an origin being warmed claims that connection and waits until it is in the
        pool (or the warm-up failed, at most ``WARM_TIMEOUT``), so that it takes it; any
        other goes on at once."""
        key = origin_of(url)
        task = self._tasks.get(key)
        claimed = self._claimed.get(key)
        if task is None or claimed is None or claimed.is_set():
            return
        claimed.set()
        await asyncio.wait([task])  # the warm-up is not cancelled if this request is

    async def _warm(self, url: str, claimed: asyncio.Event) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                held = await self._service.origin.warm(url)
        except ForbiddenTarget as exc:
            self._stats.warm_refused += 1
            self._stats.warm_failed += 1
            log.warning("refused to warm a connection: %s", exc)
            return
        except (SwarmgetError, TimeoutError) as exc:
            self._stats.warm_failed += 1
            log.info("warming a connection to %s failed: %s", redact_url(url), exc)
            return
        except Exception:  # a bug here must not outlive the task unseen
            self._stats.warm_failed += 1
            log.exception("warming a connection to %s failed", redact_url(url))
            return
        self._stats.warm_done += 1
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

    @contextlib.asynccontextmanager
    async def running(self, _app: web.Application) -> AsyncIterator[None]:
        """An ``app.cleanup_ctx`` entry: warm-ups start while the app runs and are
        cancelled and awaited when it stops."""
        self._open = True
        try:
            yield
        finally:
            self._open = False
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
