"""The hub's HTTP API: nodes register, heartbeat and leave; requesters ask for their peers.

::

    POST   /v1/nodes/register         {node_id, port, version, slots, group?, wan_rate?,
                                       quota_left?, scheme?}
                                      → {node_id, address, group, url, ttl, heartbeat_interval,
                                         replica}
                                      | 429 {"code": "too_many_nodes"}: see below
    POST   /v1/nodes/{id}/heartbeat   {stats: {...}, session_key?}
                                      → {ok, ttl, heartbeat_interval, replica, session?}
                                      | 404 {"code": "unknown_node"}: register again;
                                      ``session_key`` (signed with the node key only, 403
                                      otherwise): a new session in the answer, as below
    POST   /v1/nodes/{id}/session     {session_key} → {session_id, hub_key}: a new session
                                      with this process (``swarmget.hub.sessions``; also
                                      agreed by a register or a heartbeat that sends
                                      ``session_key``: a node moving here needs one request)
                                      | 404 unknown_node (not live here: heartbeat first)
    DELETE /v1/nodes/{id}             → {ok, removed}
    GET    /v1/peers                  → {group, peers: [...], total}: at most ``peers_limit``
                                        (default DEFAULT_PEERS_LIMIT) live nodes of the
                                        asker's group, without the asker, best first
                                        (``swarmget.hub.selection``), and how many there
                                        are in all | 404;
                                        ``?node=ID&node=ID``: only those (at most
                                        MAX_PEERS_PER_ANSWER ids);
                                        ``?requester=1``: the asker is a requester only,
                                        signed but not registered: the peers of the group
                                        of the address the request comes from
    GET    /v1/replicas/{replica}/watch
                                      → {replica, state}: when that replica of this
                                        registry is gone, or after a hold time
                                        (``swarmget.hub.replicas``)
    POST   /v1/content/{name}/join|news|leave|report
                                      the content index (fetch once, #15):
                                      ``swarmget.hub.content_routes``
    GET    /v1/health                 → {ok: true, nodes: N}   (the only unsigned route)

Any signed route may answer 503 ``overloaded`` with Retry-After when the hub is strained,
and a strained hub asks for heartbeats less often (``swarmget.hub.admission``).

Every other request must be signed (``swarmget.net.auth``): with the swarm secret, and with
the node key whose fingerprint is the node id (``swarmget.core.identity``), so a node may only
register, heartbeat or remove itself (403 otherwise), and no member can register, refresh or
remove another's id. Heartbeats and peers queries may instead be signed with a session key
agreed with this process (``swarmget.hub.sessions``: an HMAC, not an Ed25519 check); a
session this process does not hold gets 401 ``session_unknown``. Errors are JSON
``{"error", "code"}``.

Trust: the hub records the address it sees the connection come from (``request.remote``),
never one the node claims, so a node cannot point requesters at someone else's machine.
Behind reverse proxies (``trusted_proxies``: their networks) it is the right-most
X-Forwarded-For entry not written by a trusted proxy, and only when the connection itself
comes from one (``swarmget.core.forwarded``); a client's own X-Forwarded-For is never read.
The node's group is that address masked to ``group_prefix`` bits, or the group name it declares
if the hub's ``group_policy`` lets that address declare it (403 ``group_not_allowed``
otherwise; ``swarmget.core.groups.GroupPolicy``). A node is live while its last
register/heartbeat is within ``ttl`` seconds; a heartbeat from a node the hub does not know,
or no longer considers live (hub restarted with an empty registry, TTL expired), gets 404
and the node registers again. Records dead for ``PRUNE_AFTER_TTLS`` TTLs are pruned on a
register, at most once per TTL (after an expiry sweep, so that they are counted first).

Replication: several hub processes may share one registry database (PostgreSQL; see
``swarmget.hub.store``) and answer alike, since a hub keeps nothing of the registry in memory
but a group's read for a second or three (``swarmget.hub.group_cache``: an old read is
answered from while it is read again), its peers' entries as JSON text until their records
change (``swarmget.hub.peer_entries``) and when it last saw the nodes
that heartbeat to it, written every second at most (``swarmget.hub.liveness``); nodes fail
over between them (``swarmget.net.hub_client.HubPool``; with ``spread`` they also share the
load). Request nonces are
recorded in that database too (``nonces``, a ``SharedNonces``: ``swarmget.hub.service``
passes the registry store), so a signed request is accepted once by all replicas together,
also across a hub's restart; each process keeps its own per-sender cache in front of it
(which bounds what one member can make the table hold). Without ``nonces`` the hub keeps
nonces in memory and refuses requests signed before it started.

Bounds: what a node sends is validated strictly (``swarmget.protocol.hub``): a request
body over ``MAX_HUB_BODY`` bytes gets 413, a malformed one 400 with the field at fault; of
the heartbeat's stats only the whitelisted fields are kept, so a node's record stays small.
At most ``MAX_NODES_PER_ADDRESS`` live nodes may register from one source address (429 with
Retry-After for more: a dead node's record expires after the TTL), so one machine cannot
flood the registry; peer lists are capped in count (and so in bytes).

The hub never downloads anything. Handlers parse with pydantic, call the store, format.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from swarmget.core.addresses import IPNetwork
from swarmget.core.auth import Proof, is_valid_node_id
from swarmget.core.errors import StorageError
from swarmget.core.forwarded import client_address
from swarmget.core.groups import (
    DEFAULT_PREFIX_BITS,
    DEFAULT_V6_PREFIX_BITS,
    GroupPolicy,
    canonical_address,
    group_of,
)
from swarmget.defaults import DEFAULT_PEERS_LIMIT, DEFAULT_TTL
from swarmget.hub.admission import Admission, request_kind
from swarmget.hub.content_routes import ContentRoutes
from swarmget.hub.edge import HubRefusal, owned_loop, parse_body, refusals
from swarmget.hub.group_cache import DEFAULT_MAX_AGE, GroupCache
from swarmget.hub.liveness import Liveness, flush_interval, keep_flushing
from swarmget.hub.metrics import HubMetrics
from swarmget.hub.nonce_log import NonceBatches, NonceLog
from swarmget.hub.peer_entries import PeerFragments, peer_json, peers_answer_text
from swarmget.hub.replicas import HubReplicas
from swarmget.hub.selection import choose_peers
from swarmget.hub.sessions import HubSessions
from swarmget.hub.store import NodeRecord, RegistryStore
from swarmget.hub.write_stats import WriteStats
from swarmget.net.auth import (
    MAX_SIGNED_BODY,
    SharedNonces,
    auth_middleware,
    authenticated_node,
    authenticated_proof,
)
from swarmget.net.looplag import LoopLagProbe
from swarmget.protocol.hub import (
    MAX_HUB_BODY,
    MAX_PEERS_PER_ANSWER,
    REQUESTER_PARAM,
    REQUESTER_VALUE,
    HeartbeatRequest,
    RegisterAnswer,
    RegisterRequest,
    SessionRequest,
    peer_url,
)

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_TTL", "HUB_STORE", "HEALTH_PATH", "make_hub_app", "peer_json"]

#: Records not seen for this many TTLs are deleted (on each register).
PRUNE_AFTER_TTLS = 20
#: Expiries are looked for this often (in TTLs), and on each register.
SWEEP_EVERY = 1 / 3
#: At most this many expiries are counted per sweep (a larger crowd: counted by the next ones);
#: the first ``SWEEP_LOGGED`` ids are named in the log line.
SWEEP_MAX = 10_000
SWEEP_LOGGED = 20
#: Live nodes one source address may register (a machine runs a node, maybe a few `get`s).
MAX_NODES_PER_ADDRESS = 8
#: A peer heard from within this many heartbeat intervals is listed before quieter ones.
FRESH_HEARTBEATS = 2
HEALTH_PATH = "/v1/health"

#: The application's registry store (for other apps mounted next to the hub, e.g. the portal).
HUB_STORE: web.AppKey[RegistryStore] = web.AppKey("hub_store", RegistryStore)

# --- the hub ------------------------------------------------------------------------------------


@dataclass
class _Swept:
    #: Nodes last seen before this had expired by the latest sweep (None: no sweep yet).
    until: float | None = None
    #: When a register last pruned (see ``_Hub.register``).
    pruned_at: float = float("-inf")


@dataclass(frozen=True, kw_only=True)
class _Hub:
    store: RegistryStore
    ttl: float
    group_prefix: int
    v6_prefix: int
    trusted_proxies: tuple[IPNetwork, ...]
    clock: Callable[[], float]
    rng: random.Random
    max_per_address: int = MAX_NODES_PER_ADDRESS
    group_policy: GroupPolicy = field(default_factory=GroupPolicy)
    metrics: HubMetrics = field(default_factory=HubMetrics)
    peers_limit: int = DEFAULT_PEERS_LIMIT
    admission: Admission
    groups: GroupCache
    #: the content index (fetch once, #15): ``swarmget.hub.content_routes``
    contents: ContentRoutes
    liveness: Liveness
    #: this process as one replica of the registry (``swarmget.hub.replicas``)
    replicas: HubReplicas
    sessions: HubSessions = field(default_factory=HubSessions)
    #: each node's peers-answer entry as JSON text, made once per version of its record
    fragments: PeerFragments = field(default_factory=PeerFragments)
    #: nonces of heartbeats and peers queries written with the liveness flush (None: at once)
    nonce_log: NonceLog | None = None
    #: Registrations check the per-address cap and write one at a time (in this process).
    registering: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: How far the expiry sweeps got.
    swept: _Swept = field(default_factory=lambda: _Swept())

    async def live_count(self) -> int:
        return await self.store.count_live(self.clock(), self.admission.live_ttl)

    @property
    def _timers(self) -> dict[str, Any]:
        """The fields every register and heartbeat answer has: the TTL, the interval to
        heartbeat at, and which replica answered."""
        ttl = self.admission.live_ttl
        interval = self.admission.heartbeat_interval
        return {"ttl": ttl, "heartbeat_interval": interval, "replica": self.replicas.replica_id}

    async def register(self, request: web.Request) -> web.Response:
        body = await parse_body(request, RegisterRequest, MAX_HUB_BODY)
        if body.node_id != authenticated_node(request):
            raise HubRefusal("forbidden", "node_id differs from the signing node")
        address = self._source_address(request)
        group = self._group(address, body.group)
        now = self.clock()
        if not 0 <= now - self.swept.pruned_at < self.ttl:  # a DELETE per TTL, not per register
            self.swept.pruned_at = now
            await self.sweep(now)
            await self._prune(now)
        async with self.registering:
            await self._check_room(address, body.node_id, now)
            record = await self.store.upsert_node(_record(body, address, group), now)
        self.liveness.saw(record.node_id, now, record.stats, group)
        self.metrics.registrations += 1
        log.info("node registered: %s at %s (group %s)", record.node_id, record.url, group)
        self.groups.forget(group)
        session = None
        if body.session_key is None:
            self.sessions.forget(body.node_id)
        else:
            session = self.sessions.grant(body.node_id, body.session_key)
        reply = RegisterAnswer(
            node_id=record.node_id,
            address=address,
            group=group,
            url=record.url,
            session=session,
            **self._timers,
        )
        return web.json_response(reply.model_dump(exclude_none=True))

    async def new_session(self, request: web.Request) -> web.Response:
        """``POST /v1/nodes/{id}/session``: a new session for a node live in this process
        (it heartbeated here with its node key, e.g. after moving from another replica)."""
        node_id = _own_node(request)
        body = await parse_body(request, SessionRequest, MAX_HUB_BODY)
        if not self.liveness.knows(node_id, self.clock(), self.admission.live_ttl):
            raise HubRefusal("unknown_node", f"node {node_id} is not live here: heartbeat first")
        return web.json_response(self.sessions.grant(node_id, body.session_key).model_dump())

    async def sweep(self, now: float) -> int:
        """Log and count the nodes whose TTL ran out since the previous sweep (the first
        sweep only starts the watch); returns how many. Run every ``SWEEP_EVERY`` TTL by the
        app (``_sweep_forever``) and on each registration; each replica logs what it sees."""
        before = now - self.admission.live_ttl
        since, self.swept.until = self.swept.until, before
        if since is None or before <= since:
            return 0
        silent = await self.store.fell_silent(since, before, limit=SWEEP_MAX)
        if silent:
            self.metrics.expiries += len(silent)
            shown = ", ".join(silent[:SWEEP_LOGGED]) + (
                " ..." if len(silent) > SWEEP_LOGGED else ""
            )
            ttl = self.admission.live_ttl
            log.info("expired %d node(s) (silent for %.0f s): %s", len(silent), ttl, shown)
        return len(silent)

    async def _prune(self, now: float) -> None:
        forgotten = await self.store.prune(before=now - PRUNE_AFTER_TTLS * self.ttl)
        if forgotten:
            silent = PRUNE_AFTER_TTLS * self.ttl
            log.info("forgot %d node record(s) silent for %.0f s", forgotten, silent)

    async def _check_room(self, address: str, node_id: str, now: float) -> None:
        """``too_many_nodes`` when ``address`` has its share of live nodes besides this one."""
        ttl = self.admission.live_ttl
        others = await self.store.count_live_at(address, now, ttl, other_than=node_id)
        if others >= self.max_per_address:
            raise HubRefusal(
                "too_many_nodes",
                f"{address} already has {others} live nodes (at most {self.max_per_address})",
                retry_after=ttl,
            )

    async def heartbeat(self, request: web.Request) -> web.Response:
        node_id = _own_node(request)
        body = await parse_body(request, HeartbeatRequest, MAX_HUB_BODY)
        if body.session_key is not None and authenticated_proof(request) is not Proof.NODE_KEY:
            raise HubRefusal(
                "forbidden", "a new session needs a heartbeat signed with the node key"
            )
        stats = body.stats.as_json()
        with self.metrics.heartbeat_timer():
            now, ttl = self.clock(), self.admission.live_ttl
            known = await self.liveness.heartbeat(node_id, stats, now, ttl)
        if not known:  # expired (silent past its TTL and pruned), or a hub without it
            log.info("heartbeat from %s, not registered (any more): told to register", node_id)
            raise HubRefusal("unknown_node", f"node {node_id} is not registered (any more)")
        answer = {"ok": True} | self._timers
        if body.session_key is not None:  # a node moving here: its re-key in the same request
            answer["session"] = self.sessions.grant(node_id, body.session_key).model_dump()
        return web.json_response(answer)

    async def leave(self, request: web.Request) -> web.Response:
        node_id = _own_node(request)
        self.liveness.forget(node_id)
        self.sessions.forget(node_id)
        removed = await self.store.remove(node_id)
        if removed:
            self.metrics.departures += 1
            log.info("node left: %s", node_id)
        self.contents.forget_node(node_id)
        self.fragments.forget(node_id)
        self.groups.forget()  # leaving is rare: no need to look the node's group up
        return web.json_response({"ok": True, "removed": removed})

    async def peers(self, request: web.Request) -> web.Response:
        if _is_requester_query(request):
            return await self.requester_peers(request)
        node_id = authenticated_node(request)
        now, ttl = self.clock(), self.admission.live_ttl
        group = self.liveness.live_group(node_id, now, ttl)
        if group is None:  # not seen here within the TTL: the registry says
            me = await self.store.live_node(node_id, now, ttl)
            if me is None:
                raise HubRefusal("unknown_node", f"node {node_id} is not registered (any more)")
            group = me.group
            self.liveness.note_group(node_id, group)
        return await self._peers_answer(request, group, node_id, now, ttl)

    async def requester_peers(self, request: web.Request) -> web.Response:
        """``GET /v1/peers?requester=1``: a signed asker that never registered (a requester
        only) gets the live peers of the group of the address its request comes from."""
        group = self._group(self._source_address(request), None)
        now, ttl = self.clock(), self.admission.live_ttl
        return await self._peers_answer(request, group, authenticated_node(request), now, ttl)

    async def _peers_answer(
        self, request: web.Request, group: str, asker: str, now: float, ttl: float
    ) -> web.Response:
        """The live nodes of ``group`` but ``asker`` (of ``?node=``, when given), best first,
        at most ``peers_limit`` of them, and how many there are in all."""
        wanted = _wanted_nodes(request)
        mates = [
            r
            for r in await self.groups.live_in_group(group, now, ttl)
            if r.node_id != asker and (wanted is None or r.node_id in wanted)
        ]
        fresh = FRESH_HEARTBEATS * self.admission.heartbeat_interval
        chosen = choose_peers(mates, limit=self.peers_limit, now=now, fresh=fresh, rng=self.rng)
        text = peers_answer_text(group, map(self.fragments.text, chosen), len(mates))
        return web.Response(text=text, content_type="application/json")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "nodes": await self.live_count()})

    def _group(self, address: str, declared: str | None) -> str:
        """The group of a node at ``address``; a declared name only where the policy
        lets that address declare it (see ``GroupPolicy``)."""
        by_address = group_of(address, None, self.group_prefix, v6_prefix_bits=self.v6_prefix)
        if declared is None:
            return by_address
        if not self.group_policy.allows(address, declared, by_address):
            raise HubRefusal(
                "group_not_allowed",
                f"group {declared!r} may not be declared from {address}: the hub lists the "
                f"networks allowed to (--group-cidr {declared}=CIDR); drop --group to be "
                f"grouped by address ({by_address})",
            )
        return declared

    def defer_nonce(self, request: web.Request, node_id: str, nonce: str, expires: float) -> bool:
        """The auth middleware's ``defer_nonce``: the nonces of heartbeats and peers queries
        of nodes this process serves (seen here within the TTL) go to the ``NonceLog``
        (``swarmget.hub.nonce_log``); any other is written before the answer."""
        log_, now = self.nonce_log, self.clock()
        if log_ is None or not self.liveness.knows(node_id, now, self.admission.live_ttl):
            return False
        return log_.defer(request_kind(request), node_id, nonce, expires)

    def origin_of(self, request: web.Request) -> str | None:
        """The sender's address for the replay cache's shares (the proxy's client, when
        one is trusted); senders whose address cannot be told share one."""
        try:
            return self._source_address(request)
        except HubRefusal:
            return "(unknown)"

    def _source_address(self, request: web.Request) -> str:
        """Where the connection came from (or the trusted proxies say it came from)."""
        claimed = request.remote or ""
        try:
            forwarded = request.headers.getall("X-Forwarded-For", [])
            claimed = client_address(claimed, forwarded, self.trusted_proxies)
            return canonical_address(claimed)
        except ValueError as exc:
            raise HubRefusal("bad_address", f"cannot tell your address ({claimed!r})") from exc


def _record(body: RegisterRequest, address: str, group: str) -> NodeRecord:
    return NodeRecord(
        node_id=body.node_id,
        address=address,
        port=body.port,
        url=peer_url(body.scheme, address, body.port),
        version=body.version,
        slots=body.slots,
        group=group,
        wan_rate=body.wan_rate,
        quota_left=body.quota_left,
    )


def _wanted_nodes(request: web.Request) -> frozenset[str] | None:
    """The node ids of ``?node=...`` (None: any), at most ``MAX_PEERS_PER_ANSWER``."""
    wanted = request.query.getall("node", [])
    if not wanted:
        return None
    if len(wanted) > MAX_PEERS_PER_ANSWER or not all(map(is_valid_node_id, wanted)):
        raise HubRefusal("bad_request", f"node: at most {MAX_PEERS_PER_ANSWER} valid node ids")
    return frozenset(wanted)


def _is_requester_query(request: web.Request) -> bool:
    """Whether ``GET /v1/peers`` comes from a requester only (``?requester=1``); any other
    value of the parameter is refused."""
    values = request.query.getall(REQUESTER_PARAM, [])
    if not values:
        return False
    if values != [REQUESTER_VALUE]:
        raise HubRefusal("bad_request", f"{REQUESTER_PARAM}: only {REQUESTER_VALUE!r}, once")
    return True


def _own_node(request: web.Request) -> str:
    """The node named in the path, which must be the node that signed the request."""
    node_id = request.match_info["node_id"]
    if node_id != authenticated_node(request):
        raise HubRefusal("forbidden", "a node may only act for itself")
    return node_id


async def _sweep_forever(hub: _Hub) -> None:
    """``hub.sweep`` every ``SWEEP_EVERY`` TTL; a failing sweep (the database away) is
    logged, not fatal."""
    while True:
        try:
            await hub.sweep(hub.clock())
            await hub.contents.expire(hub.clock())
        except StorageError as exc:
            log.warning("expiry sweep failed: %s", exc)
        except Exception:  # a bug: the hub goes on serving, the next sweep tries again
            log.exception("expiry sweep crashed")
        await asyncio.sleep(max(hub.ttl * SWEEP_EVERY, 0.05))


def _flush_forever(hub: _Hub) -> Coroutine[Any, Any, None]:
    """Write the liveness kept in memory (``swarmget.hub.liveness``) and the deferred
    nonces (``swarmget.hub.nonce_log``), every flush interval."""
    every, ttl = flush_interval(hub.ttl), lambda: hub.admission.live_ttl
    log_ = hub.nonce_log
    return keep_flushing(hub.liveness, every=every, clock=hub.clock, ttl=ttl, also=log_)


def make_hub_app(
    store: RegistryStore,
    secret: bytes,
    *,
    ttl: float = DEFAULT_TTL,
    group_prefix: int = DEFAULT_PREFIX_BITS,
    group_prefix_v6: int = DEFAULT_V6_PREFIX_BITS,
    trusted_proxies: tuple[IPNetwork, ...] = (),
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    max_nodes_per_address: int = MAX_NODES_PER_ADDRESS,
    group_policy: GroupPolicy | None = None,
    nonces: SharedNonces | None = None,
    peers_limit: int = DEFAULT_PEERS_LIMIT,
    admission: Admission | None = None,
    group_max_age: float = DEFAULT_MAX_AGE,
    write_stats: WriteStats | None = None,
    liveness_in_memory: bool = True,
    nonce_batches: NonceBatches | None = None,
    lag_probe: LoopLagProbe | None = None,
    replicas: HubReplicas | None = None,
) -> web.Application:
    """The hub as an aiohttp application. The caller owns ``store`` (opens and closes it)
    and ``nonces`` (where replicas share seen nonces; None: in this process only).
    ``rng`` orders equally good peers in answers (default: a fresh ``random.Random``).
    ``peers_limit``: peers per answer (1 … ``MAX_PEERS_PER_ANSWER``); ``admission``: the
    strain policy (default: ``Admission`` on the real clock, with the hub's ``ttl``);
    ``group_max_age``: seconds one group's read of the registry is reused (0: never);
    ``write_stats``: the store's, exported in ``/metrics``; ``liveness_in_memory`` False:
    heartbeats are written through at once (``swarmget.hub.liveness``); ``nonce_batches``
    (with ``nonces``, usually the same store): the nonces of heartbeats and peers queries
    are written there with the liveness flush instead of before the answer
    (``swarmget.hub.nonce_log``, which says what that weakens and why it is safe);
    ``lag_probe``: runs while the app does, its figures on ``/metrics``
    (``swarmget.net.looplag``: benchmarks); ``replicas``: this process as a replica
    watching the others of ``store`` (default: ``HubReplicas`` with a new id)."""
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    if not 0 <= group_prefix <= 32 or not 0 <= group_prefix_v6 <= 128:
        raise ValueError("group prefixes must be 0-32 (IPv4) and 0-128 (IPv6) bits")
    if max_nodes_per_address < 1:
        raise ValueError("max_nodes_per_address must be at least 1")
    if not 1 <= peers_limit <= MAX_PEERS_PER_ANSWER:
        raise ValueError(f"peers_limit must be 1-{MAX_PEERS_PER_ANSWER}")
    metrics = HubMetrics(write_stats)
    admission = admission or Admission(ttl=ttl, registry=metrics.registry)
    hub = _Hub(
        store=store,
        ttl=ttl,
        group_prefix=group_prefix,
        v6_prefix=group_prefix_v6,
        trusted_proxies=trusted_proxies,
        clock=clock,
        rng=rng or random.Random(),
        max_per_address=max_nodes_per_address,
        group_policy=group_policy or GroupPolicy(),
        metrics=metrics,
        peers_limit=peers_limit,
        admission=admission,
        groups=GroupCache(store, clock=clock, max_age=group_max_age),
        contents=ContentRoutes(store=store, clock=clock, admission=admission, metrics=metrics),
        liveness=Liveness(store, in_memory=liveness_in_memory),
        replicas=replicas or HubReplicas(store=store),
        nonce_log=(
            NonceLog(nonce_batches, metrics)
            if nonce_batches is not None and nonces is not None
            else None
        ),
    )
    metrics.session_counts = hub.sessions.counts
    metrics.replica_counts = hub.replicas.counts
    exempt = frozenset({HEALTH_PATH, "/metrics"})
    auth = auth_middleware(
        secret,
        exempt=exempt,
        clock=clock,
        shared=nonces,
        origin_of=hub.origin_of,
        defer_nonce=hub.defer_nonce if hub.nonce_log is not None else None,
        session_key=hub.sessions.middleware_lookup,
    )
    app = web.Application(
        middlewares=[refusals, admission.middleware, auth], client_max_size=MAX_SIGNED_BODY
    )
    app[HUB_STORE] = store
    app.cleanup_ctx.append(owned_loop(functools.partial(_sweep_forever, hub)))
    app.cleanup_ctx.append(owned_loop(functools.partial(_flush_forever, hub)))
    app.cleanup_ctx.append(owned_loop(hub.groups.refresh_forever))
    if lag_probe is not None:
        metrics.registry.register(lag_probe)
        app.cleanup_ctx.append(owned_loop(lag_probe.run))
    app.router.add_post("/v1/nodes/register", hub.register)
    app.router.add_post("/v1/nodes/{node_id}/heartbeat", hub.heartbeat)
    app.router.add_post("/v1/nodes/{node_id}/session", hub.new_session)
    app.router.add_delete("/v1/nodes/{node_id}", hub.leave)
    app.router.add_get("/v1/peers", hub.peers)
    app.router.add_get(HEALTH_PATH, hub.health)
    app.router.add_get("/metrics", hub.metrics.handler(hub.live_count))
    hub.contents.add_to(app)
    hub.replicas.add_to(app)
    return app
