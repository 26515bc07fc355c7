"""Admission control: a strained hub slows its nodes down and sheds work, never drops nodes.

Theory of operation. The hub's *load* is a number where 1.0 means "at capacity": by default
the larger of (requests in flight / ``max_in_flight``) and (a moving average of how long
heartbeats and peer lists take / ``target_latency``); a test injects its own ``probe``
instead. Registrations are not in the average: they are rare but slow (they take turns, and
a hub restarted under thousands of nodes gets all of them at once), and slowing every
node's heartbeats would not make them faster; at most ``max_registering`` wait at a time,
more are shed (503 + Retry-After) whatever the load. The average
fades with time (``LATENCY_DECAY``) when no request finishes, so a hub that sheds everything
does not stay "slow" for ever on the memory of its last slow requests. From the load:

* the **slowdown**, a power of two from 1 to ``MAX_SLOWDOWN``, doubles while the load is at
  or above 1 (at most once per base heartbeat interval, so one burst does not reach the top
  at once) and halves once the load has stayed under ``RELAXED`` for a whole current
  heartbeat interval, so every live node has heard the new interval before the next step;
* nodes are told to heartbeat every ``slowdown`` × (TTL / 3) seconds, and a node stays live
  for ``slowdown`` × TTL: a node that heartbeats as told never expires because the hub was
  slow (after a halving the TTL is still 1.5 times the interval it was told before);
* while the load is at or above 1, replica watches (``swarmget.hub.replicas``: held
  requests that wait for news, so never counted in flight nor timed), registrations,
  re-keys (``POST /v1/nodes/{id}/session``: a key agreement and a node-key signature, as
  costly as a registration; a node whose re-key is refused goes on signing with its node
  key) and peer lists are shed: 503 ``overloaded`` with ``Retry-After`` (the current
  heartbeat interval). Re-keys share the registrations' waiting room
  (``max_registering``): a hub restarted under thousands of nodes gets all of their
  re-keys at once. Heartbeats never are: they are the cheapest call, and a shed one could
  make its node expire (the TTL promise above holds for nodes whose heartbeats get
  through); the slowdown is what lightens them. A heartbeat signed with the node key that
  asks for a session (a node that moved here, or whose session this process lost:
  ``swarmget.hub.app``) gets it whatever the load: the agreement (~0.1 ms) replaces a
  whole re-key request, and saves the Ed25519 check of each later heartbeat. Health,
  metrics and leaving are never shed either.

Shedding happens before the signature is checked, so that a refused request costs the hub
no database write (the replay cache records every signed request's nonce).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge

from swarmget.net.auth import json_error
from swarmget.protocol.errors import HUB_ERRORS

__all__ = ["HEARTBEATS_PER_TTL", "MAX_SLOWDOWN", "Admission", "RequestKind", "request_kind"]

#: The most the hub stretches the heartbeat interval (and the TTL) under strain.
MAX_SLOWDOWN = 8
#: Load under which the slowdown may halve again.
RELAXED = 0.5
DEFAULT_MAX_IN_FLIGHT = 256
#: Registrations that may wait at a time (they take turns: see ``swarmget.hub.app``).
DEFAULT_MAX_REGISTERING = 32
#: Seconds a request may take on average before the hub counts itself at capacity.
DEFAULT_TARGET_LATENCY = 0.25
#: Weight of the latest request in the moving average of request durations.
LATENCY_WEIGHT = 0.05
#: Seconds over which the average fades (by 1/e) while no request finishes.
LATENCY_DECAY = 1.0
#: Heartbeats are asked for this many times per TTL, so one lost heartbeat is harmless.
HEARTBEATS_PER_TTL = 3


class RequestKind(Enum):
    """What a request costs the hub, as admission control sees it."""

    REGISTER = "register"
    SESSION = "session"  # a re-key: POST /v1/nodes/{id}/session
    HEARTBEAT = "heartbeat"
    PEERS = "peers"
    WATCH = "watch"  # a replica watch (swarmget.hub.replicas): held, not counted in flight
    FREE = "free"  # health, metrics, leaving: never shed


def request_kind(request: web.Request) -> RequestKind:
    path, method = request.path, request.method
    if method == "POST" and path == "/v1/nodes/register":
        return RequestKind.REGISTER
    if method == "POST" and path.endswith("/heartbeat"):
        return RequestKind.HEARTBEAT
    if method == "POST" and path.startswith("/v1/nodes/") and path.endswith("/session"):
        return RequestKind.SESSION
    if method == "GET" and path == "/v1/peers":
        return RequestKind.PEERS
    if method == "GET" and path.startswith("/v1/replicas/"):
        return RequestKind.WATCH
    return RequestKind.FREE


@dataclass(kw_only=True)
class Admission:
    """One hub process's admission control (see module doc). ``clock`` is monotonic
    seconds; ``probe`` (None: in-flight requests and their durations) gives the load."""

    ttl: float
    clock: Callable[[], float] = time.monotonic
    probe: Callable[[], float] | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_registering: int = DEFAULT_MAX_REGISTERING
    target_latency: float = DEFAULT_TARGET_LATENCY
    registry: CollectorRegistry | None = None
    slowdown: int = 1
    in_flight: int = 0
    registering: int = 0
    latency: float = 0.0
    _changed_at: float = field(default=float("-inf"))
    _busy_at: float = field(default=float("-inf"))
    _finished_at: float = field(default=float("-inf"))
    _shed: Counter | None = field(default=None, init=False)
    _slowdown_gauge: Gauge | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if min(self.max_in_flight, self.max_registering) < 1:
            raise ValueError("max_in_flight and max_registering must be positive")
        if self.ttl <= 0 or self.target_latency <= 0:
            raise ValueError("ttl and target_latency must be positive")
        if self.registry is not None:
            self._shed = Counter(
                "swarmget_hub_shed_requests",
                "Requests refused with 503 overloaded, by kind",
                ["kind"],
                registry=self.registry,
            )
            self._slowdown_gauge = Gauge(
                "swarmget_hub_heartbeat_slowdown_ratio",
                "How many times the base heartbeat interval nodes are told to wait",
                registry=self.registry,
            )
            self._slowdown_gauge.set(self.slowdown)

    @property
    def live_ttl(self) -> float:
        """Seconds a node stays live after its last heartbeat (the TTL, stretched)."""
        return self.ttl * self.slowdown

    @property
    def heartbeat_interval(self) -> float:
        """Seconds nodes are told to wait between heartbeats."""
        return self.live_ttl / HEARTBEATS_PER_TTL

    def load(self) -> float:
        if self.probe is not None:
            return self.probe()
        latency = self._latency(self.clock())
        return max(self.in_flight / self.max_in_flight, latency / self.target_latency)

    def _latency(self, now: float) -> float:
        """The moving average of request durations, faded since the last one finished."""
        if self.latency == 0.0:
            return 0.0
        return self.latency * math.exp(-max(0.0, now - self._finished_at) / LATENCY_DECAY)

    def admit(self, kind: RequestKind) -> float | None:
        """None to serve a request of ``kind`` now; else the seconds to ask it to wait."""
        load = self._update()
        crowded = kind in _ROOM and self.registering >= self.max_registering
        if kind in (RequestKind.FREE, RequestKind.HEARTBEAT) or (load < 1.0 and not crowded):
            return None
        if self._shed is not None:
            self._shed.labels(kind.value).inc()
        return self.heartbeat_interval

    def _update(self) -> float:
        now, load = self.clock(), self.load()
        if load >= RELAXED:
            self._busy_at = now
        if load >= 1.0:
            waited = now - self._changed_at >= self.ttl / HEARTBEATS_PER_TTL
            if self.slowdown < MAX_SLOWDOWN and waited:
                self._set(self.slowdown * 2, now)
        elif self.slowdown > 1:
            quiet_since = max(self._busy_at, self._changed_at)
            if now - quiet_since >= self.heartbeat_interval:
                self._set(self.slowdown // 2, now)
        return load

    def _set(self, slowdown: int, now: float) -> None:
        self.slowdown, self._changed_at = slowdown, now
        if self._slowdown_gauge is not None:
            self._slowdown_gauge.set(slowdown)

    def finished(self, seconds: float) -> None:
        """A served request took ``seconds``: into the moving average."""
        now = self.clock()
        latency = self._latency(now)
        self.latency = latency + LATENCY_WEIGHT * (seconds - latency)
        self._finished_at = now

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Shed (503 ``overloaded`` + Retry-After) or serve and time the request."""
        kind = request_kind(request)
        wait = self.admit(kind)
        if wait is not None:
            status = HUB_ERRORS.row("overloaded").status
            message = f"the hub is overloaded: try again in {wait:.0f} s"
            return json_error(status, message, "overloaded", headers=_retry_after(wait))
        if kind is RequestKind.WATCH:  # held for news, not work: neither load nor latency
            return await handler(request)
        started = self.clock()
        registering = kind in _ROOM
        self.in_flight += 1
        self.registering += registering
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1
            self.registering -= registering
            if kind in (RequestKind.HEARTBEAT, RequestKind.PEERS):
                self.finished(self.clock() - started)


#: the kinds that wait in the registrations' room (``max_registering``)
_ROOM = frozenset({RequestKind.REGISTER, RequestKind.SESSION})


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds)))}
