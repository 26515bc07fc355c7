"""Staying a member of the hub for as long as a node runs.

``run_membership`` keeps a node registered for as long as it runs; the node daemon runs it
as an owned task. It registers, heartbeats every ``heartbeat_interval`` (as the hub asks in
its latest answer, at most ``MAX_HUB_WAIT``, unless ``interval`` is given), registers again
at once when the hub has forgotten the node (404) or a pool moved to another hub
(``HubSwitched``), and after any other failure backs off exponentially (with jitter, so that
a restarted hub is not hit by every node in the same instant), or for as long as the hub's
Retry-After says when that is longer (at most ``MAX_HUB_WAIT``). A heartbeat that fails
because the hub is unavailable or slow keeps the registration: the next attempt is a
heartbeat again, not a registration (the most expensive call, and what made a slow hub's
nodes storm it); only the hub saying it forgot us (404) makes us register again. A refused
heartbeat (``HubRejected``) registers again after the backoff. When cancelled it tells the
hub it leaves, best effort and bounded by ``leave_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from swarmget.core.backoff import exponential_backoff
from swarmget.core.errors import HubError, HubUnavailable, UnknownNode
from swarmget.core.lifecycle import HubStanding
from swarmget.net.hub_client import (
    MAX_HUB_WAIT,
    MIN_HUB_INTERVAL,
    HubApi,
    Registered,
    Registration,
)

__all__ = ["MembershipState", "membership_backoff", "run_membership"]

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_INITIAL = 1.0
DEFAULT_BACKOFF_MAX = 30.0
DEFAULT_LEAVE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MembershipState:
    """Where membership stands after the latest attempt. ``registered`` is None while we
    are not registered; ``error`` is the latest failure (None once a call succeeded);
    ``hub_url`` is the hub we are (or are trying to be) registered with; ``next_in`` the
    seconds until the next attempt; ``attempted`` False before the first attempt ended
    (``starting``)."""

    registered: Registered | None
    failures: int = 0
    error: str | None = None
    hub_url: str | None = None
    next_in: float | None = None
    attempted: bool = True

    @classmethod
    def starting(cls, hub_url: str) -> MembershipState:
        """The state of a node whose first registration with ``hub_url`` is under way."""
        return cls(registered=None, hub_url=hub_url, attempted=False)

    @property
    def standing(self) -> HubStanding:
        if self.registered is not None:
            return HubStanding.REGISTERED
        return HubStanding.NOT_REGISTERED if self.attempted else HubStanding.REGISTERING


def membership_backoff(
    failures: int, *, initial: float, maximum: float, jitter: float = 1.0
) -> float:
    """Seconds to wait after ``failures`` consecutive failures (>= 1): ``initial`` doubling
    up to ``maximum``, scaled by ``0.5 + jitter / 2`` (``jitter`` in [0, 1])."""
    delay = exponential_backoff(failures, initial=initial, maximum=maximum)
    return delay * (0.5 + jitter / 2)


@dataclass(slots=True)
class _Membership:
    """The loop's state and decisions; ``run_membership`` does the waiting and calling."""

    client: HubApi
    registration: Registration
    interval: float | None
    initial: float
    maximum: float
    registered: Registered | None = None
    failures: int = 0
    error: str | None = None
    #: The heartbeat interval of the hub's latest answer.
    hub_interval: float = 0.0

    async def step(self, stats_fn: Callable[[], Mapping[str, Any]]) -> float:
        """One register or heartbeat; returns how long to wait before the next."""
        try:
            if self.registered is None:
                self.registered = await self.client.register(self.registration)
                self.hub_interval = self.registered.heartbeat_interval
                log.info("registered with hub %s as %s", self.client.hub_url, self.registered)
            else:
                answer = await self.client.heartbeat(stats_fn())
                self.hub_interval = answer.heartbeat_interval
        except UnknownNode as exc:
            log.info("%s; registering again with hub %s", exc, self.client.hub_url)
            self._failed(exc, keep=False)
            return 0.0
        except HubError as exc:
            log.warning("hub %s: %s", self.client.hub_url, exc)
            self._failed(exc, keep=isinstance(exc, HubUnavailable))
            return self._backoff(exc)
        self.failures, self.error = 0, None
        if self.interval is not None:
            return self.interval
        return min(max(self.hub_interval, MIN_HUB_INTERVAL), MAX_HUB_WAIT)

    def _backoff(self, exc: HubError) -> float:
        """The wait after a failure: exponential backoff, or the hub's Retry-After (plus up
        to a half of it, so that shed nodes do not all come back at once) when longer."""
        self.failures += 1
        jitter = random.random()
        delay = membership_backoff(
            self.failures, initial=self.initial, maximum=self.maximum, jitter=jitter
        )
        asked = exc.retry_after if isinstance(exc, HubUnavailable) else None
        if asked is None:
            return delay
        return min(max(delay, asked * (1 + jitter / 2)), MAX_HUB_WAIT)

    def _failed(self, exc: HubError, *, keep: bool) -> None:
        """Record the failure; forget the registration unless ``keep`` (see module doc)."""
        if not keep:
            self.registered = None
        self.error = str(exc)

    def state(self, next_in: float | None = None) -> MembershipState:
        return MembershipState(
            registered=self.registered,
            failures=self.failures,
            error=self.error,
            hub_url=self.client.hub_url,
            next_in=next_in,
        )


async def run_membership(
    client: HubApi,
    registration: Registration,
    stats_fn: Callable[[], Mapping[str, Any]],
    *,
    interval: float | None = None,
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
    backoff_max: float = DEFAULT_BACKOFF_MAX,
    leave_timeout: float = DEFAULT_LEAVE_TIMEOUT,
    on_state: Callable[[MembershipState], None] | None = None,
    wake: asyncio.Event | None = None,
) -> None:
    """Stay registered with the hub until cancelled (see module doc). ``stats_fn`` gives
    the stats for each heartbeat; ``on_state`` hears the state after every attempt;
    ``wake``, when set, ends the wait for the next attempt at once (and is cleared): the
    pool moved away from a gone hub (``swarmget.net.replica_watch``)."""
    member = _Membership(
        client=client,
        registration=registration,
        interval=interval,
        initial=backoff_initial,
        maximum=backoff_max,
    )
    try:
        while True:
            delay = await member.step(stats_fn)
            if on_state is not None:
                on_state(member.state(delay))
            await _wait(delay, wake)
    finally:
        if member.registered is not None:
            await _leave_quietly(client, leave_timeout)


async def _wait(delay: float, wake: asyncio.Event | None) -> None:
    """``delay`` seconds, or less when ``wake`` is set (then cleared)."""
    if wake is None:
        await asyncio.sleep(delay)
        return
    try:
        async with asyncio.timeout(delay):
            await wake.wait()
    except TimeoutError:
        return
    wake.clear()


async def _leave_quietly(client: HubApi, limit: float) -> None:
    """Tell the hub we leave; give up silently after ``limit`` seconds or on a hub error."""
    try:
        async with asyncio.timeout(limit):
            await client.leave()
    except (HubError, TimeoutError) as exc:
        log.info("could not tell hub %s that we leave: %s", client.hub_url, exc)
