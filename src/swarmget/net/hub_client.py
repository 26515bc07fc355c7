"""A node's side of the hub: register, heartbeat, leave, list peers; and staying a member.

``HubClient`` signs every request (``swarmget.net.auth``) and translates every failure into
the error tree:

* connection failures, timeouts, 5xx and 429, and answers that are not what the hub API
  promises (or longer than ``MAX_HUB_ANSWER_BYTES``) → ``HubUnavailable`` (back off and
  retry);
* 404 ``{"code": "unknown_node"}`` → ``UnknownNode`` (register again);
* any other 4xx (401 bad signature or clock skew, 403, 400), and redirects (a signature
  covers the path, so the hub URL must be the final one) → ``HubRejected`` carrying the
  hub's message; retrying unchanged will not help.

A peer list is checked entry by entry (``swarmget.protocol.hub.PeerEntry``): a malformed
entry is skipped (and logged), the valid ones are kept, so that one broken or hostile member
cannot empty everyone's list; of a list longer than ``MAX_PEERS_PER_ANSWER`` (an older hub)
a random sample of that many is kept.

A requester only (``swarmget get --hub``: it downloads, it never helps) uses a client made
with ``requester_only=True``: it never registers or heartbeats (those calls are refused:
``RequesterOnly``), and ``peers`` asks the hub's requester-only query
(``swarmget.protocol.hub.REQUESTER_PARAM``), which groups it by the address the hub sees.
A hub older than that query answers it 404 ``unknown_node``: that raises ``HubTooOld``.

``HubPool`` is the same interface (``HubApi``) over several hubs that share one registry
database (a replicated hub), with failover; see its docstring. The node daemon always uses
one (a pool of one hub behaves like its ``HubClient``).

Session keys (issue #17; ``swarmget.core.session_auth``): a client made with ``sessions``
(the default) sends an ephemeral X25519 key with its registration; when the hub answers a
session, heartbeats and peers queries are signed with the session key (an HMAC the hub
checks ~20x faster than the node key's signature). When the hub refuses the session (401:
another replica, a restarted hub: ``HubSessionRefused``), the client drops it and sends the
same call signed with its node key at once (nothing is lost). A heartbeat signed with the
node key (no session with that hub: after a refusal, or the first one to a replica we moved
to) carries a new ephemeral key, and the hub's answer the new session: a move is one
request. A hub that answers no session there (older) is asked with ``POST
/v1/nodes/{id}/session`` after the heartbeat; a failed re-key is tried again after
``REKEY_BACKOFF`` seconds, and a hub that answered a registration without a session (older
still) is never asked.

``run_membership`` (``swarmget.net.membership``) keeps a node registered with these calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import aiohttp
import pydantic
from yarl import URL

from swarmget.core.errors import (
    HubError,
    HubRejected,
    HubSessionRefused,
    HubTooOld,
    HubUnavailable,
    UnknownNode,
)
from swarmget.core.session_auth import (
    EphemeralKey,
    SessionKey,
    decode_public_key,
    session_signed_headers,
)
from swarmget.net.bounded import read_bounded
from swarmget.net.plain import plain_words
from swarmget.net.signing import NodeIdentity, json_body, new_nonce, signed_headers
from swarmget.protocol.errors import HUB_ERRORS, error_body
from swarmget.protocol.hub import (
    MAX_HUB_ANSWER_BYTES,
    MAX_PEERS_PER_ANSWER,
    PEERS_PATH,
    HeartbeatAnswer,
    PeerEntry,
    PeersAnswer,
    RegisterAnswer,
    RegisterRequest,
    ReplicaNews,
    SessionGrant,
    replica_watch_path,
    requester_query,
    session_path,
)

__all__ = [
    "HUB_KEEPALIVE",
    "HubApi",
    "HubClient",
    "HubPool",
    "HubSwitched",
    "PeerInfo",
    "WATCH_TIMEOUT",
    "Registered",
    "Registration",
    "RequesterOnly",
    "hub_connector",
    "parse_answer",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
#: Seconds to wait for a hub to accept the connection: a dead machine is noticed sooner.
DEFAULT_CONNECT_TIMEOUT = 3.0
#: Seconds a heartbeat or a peers query may take (connecting included): a hub answers them
#: from memory (``swarmget.hub.liveness``, ``swarmget.hub.group_cache``), so a hung hub
#: (SIGSTOP: the kernel still accepts) is noticed within this, and a ``HubPool`` moves to
#: the next replica (issue #17: failover < 5 s).
#: A pool of one hub waits ``timeout`` (nowhere to move to).
DEFAULT_HEARTBEAT_TIMEOUT = 2.0
#: The longest a node waits because the hub said so (Retry-After, heartbeat interval).
MAX_HUB_WAIT = 300.0
#: The shortest heartbeat interval a hub may ask for.
MIN_HUB_INTERVAL = 1.0
#: Seconds a node keeps an idle connection to its hub open (the connector of the session it
#: gives ``HubPool``: ``hub_connector``): longer than the longest heartbeat interval a strained
#: hub asks for at the default TTL (8 x 5 s), shorter than the hub's idle timeout (75 s), so
#: that a strained hub is not also made to accept a new connection for every heartbeat
#: (aiohttp's default, 15 s, did: measured, bench/README "The hub under load", 2026-12-06).
HUB_KEEPALIVE = 60.0
#: Seconds before a failed re-key (``POST /v1/nodes/{id}/session``) is tried again.
REKEY_BACKOFF = 60.0
#: Seconds a replica watch may take (``swarmget.hub.replicas``: a hub holds one up to
#: ``WATCH_HOLD``, 50 s, when nothing happens).
WATCH_TIMEOUT = 75.0

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """What a node tells the hub about itself. The hub takes the address from the
    connection, so there is none here; ``group`` None means "group me by address"."""

    port: int
    version: str
    slots: int
    group: str | None = None
    wan_rate: int | None = None
    quota_left: int | None = None
    scheme: str = "http"

    def as_json(self, node_id: str, session_key: str | None = None) -> dict[str, Any]:
        """The ``RegisterRequest`` (the hub validates it: not checked again here);
        ``session_key``: our ephemeral X25519 public key, to agree on a session."""
        fields = {"node_id": node_id} | dataclasses.asdict(self)
        fields["session_key"] = session_key
        unsent = {"session_key"} if session_key is None else set()
        return RegisterRequest.model_construct(**fields).model_dump(exclude=unsent)


#: The hub's answer to a registration (``swarmget.protocol.hub.RegisterAnswer``).
Registered = RegisterAnswer
#: A live node of our group, as the hub lists it (``swarmget.protocol.hub.PeerEntry``).
#: ``last_seen`` and ``registered_at`` are on the hub's clock; ``stats`` is what the peer
#: reported in its last heartbeat.
PeerInfo = PeerEntry

_REGISTERED = pydantic.TypeAdapter(RegisterAnswer)
_PEERS = pydantic.TypeAdapter(PeersAnswer)
_HEARTBEAT = pydantic.TypeAdapter(HeartbeatAnswer)
_SESSION = pydantic.TypeAdapter(SessionGrant)
_NEWS = pydantic.TypeAdapter(ReplicaNews)


def hub_connector(local_addr: tuple[str, int] | None = None) -> aiohttp.TCPConnector:
    """A connector for a node's session to its hubs: idle connections kept
    ``HUB_KEEPALIVE`` seconds; ``local_addr``: where to speak from (the hub records it)."""
    return aiohttp.TCPConnector(limit=0, local_addr=local_addr, keepalive_timeout=HUB_KEEPALIVE)


class RequesterOnly(RuntimeError):
    """A requester-only hub client was asked to register, heartbeat or leave (a bug)."""


class HubClient:
    """Signed calls to one hub as one node. The caller owns ``session``; ``clock`` gives
    the time put in signatures. ``requester_only``: see the module doc."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        hub_url: str,
        secret: bytes,
        identity: NodeIdentity,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        requester_only: bool = False,
        sessions: bool = True,
    ) -> None:
        self.requester_only = requester_only
        #: the session agreed with this hub (None: none, sign with the node key)
        self.session: SessionKey | None = None
        #: the replica id its latest register or heartbeat answer named (None: none yet, or
        #: a hub older than replica watching)
        self.replica: str | None = None
        #: whether to agree sessions: off when asked, or when the hub keys none (older)
        self._sessions = sessions and not requester_only
        self._rekey_after = float("-inf")
        self._session = session
        self._clock = clock
        self.hub_url = hub_url.rstrip("/")
        self._secret = secret
        self._identity = identity
        self.node_id = identity.node_id
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, connect_timeout)
        )
        beat = min(timeout, heartbeat_timeout)
        self._quick_timeout = aiohttp.ClientTimeout(total=beat, sock_connect=beat)
        self._watch_timeout = aiohttp.ClientTimeout(
            total=WATCH_TIMEOUT, sock_connect=min(timeout, connect_timeout)
        )

    async def register(self, registration: Registration) -> Registered:
        self._check_member()
        mine = EphemeralKey() if self._sessions else None
        payload = registration.as_json(self.node_id, mine.public_b64 if mine else None)
        answer = parse_answer(_REGISTERED, await self.call("POST", "/v1/nodes/register", payload))
        self.replica = answer.replica
        self.session = None
        if mine is not None:
            if answer.session is None:
                self._sessions = False  # a hub that keys no sessions: never ask it again
            else:
                self.session = self._agree(mine, answer.session)
        return answer

    async def heartbeat(self, stats: Mapping[str, Any] | None = None) -> HeartbeatAnswer:
        """Raises ``UnknownNode`` when the hub wants us to register again. Without a session
        with this hub (we moved here, or it restarted) the heartbeat, signed with the node
        key, asks for one (``session_key``); a hub that answers none (older) is asked with
        ``POST /v1/nodes/{id}/session`` after it."""
        self._check_member()
        path = f"/v1/nodes/{self.node_id}/heartbeat"
        payload: dict[str, Any] = {"stats": stats or {}}
        session = self.session
        if session is not None:
            try:
                raw = await self.call("POST", path, payload, self._quick_timeout, session=session)
                return self._beat_answer(raw)
            except HubSessionRefused as exc:
                self._drop_session(session, exc)
        mine = EphemeralKey() if self._sessions else None
        if mine is not None:
            payload["session_key"] = mine.public_b64
        answer = self._beat_answer(await self.call("POST", path, payload, self._quick_timeout))
        if mine is not None and answer.session is not None:
            self.session = self._agree(mine, answer.session)
        elif self.session is None and self._sessions:
            await self._rekey()
        return answer

    def _beat_answer(self, raw: bytes) -> HeartbeatAnswer:
        parsed = parse_answer(_HEARTBEAT, raw)
        self.replica = parsed.replica
        return parsed

    async def watch(self, replica: str) -> ReplicaNews:
        """Wait until this hub says what replica ``replica`` (another hub process of our
        registry) is: gone, alive after the hub's hold time, or unknown to it
        (``swarmget.hub.replicas``). A member's call (signed with the node key: the
        session, if any, is another replica's)."""
        self._check_member()
        raw = await self.call("GET", replica_watch_path(replica), None, self._watch_timeout)
        return parse_answer(_NEWS, raw)

    async def _session_call(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None,
        limits: aiohttp.ClientTimeout,
    ) -> bytes:
        """``call`` signed with our session when we hold one; when the hub refuses it, the
        session is dropped and the call signed with the node key at once."""
        session = self.session
        if session is not None:
            try:
                return await self.call(method, path, payload, limits, session=session)
            except HubSessionRefused as exc:
                self._drop_session(session, exc)
        return await self.call(method, path, payload, limits)

    def _drop_session(self, session: SessionKey, refused: HubSessionRefused) -> None:
        log.info(
            "hub %s refused our session (%s): signing with the node key", self.hub_url, refused
        )
        if self.session is session:
            self.session = None

    async def _rekey(self) -> None:
        """Agree on a new session (best effort: on failure, again after REKEY_BACKOFF)."""
        if self._clock() < self._rekey_after:
            return
        mine = EphemeralKey()
        try:
            raw = await self.call(
                "POST", session_path(self.node_id), {"session_key": mine.public_b64},
                self._quick_timeout,
            )  # fmt: skip
            self.session = self._agree(mine, parse_answer(_SESSION, raw))
        except HubError as exc:
            wait = REKEY_BACKOFF
            if isinstance(exc, HubUnavailable) and exc.retry_after is not None:
                wait = max(wait, exc.retry_after)  # a strained hub shed it: as long as it asks
            self._rekey_after = self._clock() + wait
            log.info("no session with hub %s (the node key signs): %s", self.hub_url, exc)

    def _agree(self, mine: EphemeralKey, grant: SessionGrant) -> SessionKey | None:
        hub_key = decode_public_key(grant.hub_key)
        if hub_key is None:  # pragma: no cover - SessionGrant validated it
            return None
        try:
            return mine.agree(
                hub_key, node_id=self.node_id, session_id=grant.session_id,
                node_public=mine.public,
            )  # fmt: skip
        except ValueError as exc:  # a low-order key: the node key signs
            log.warning("hub %s sent an unusable session key: %s", self.hub_url, exc)
            return None

    async def leave(self) -> None:
        self._check_member()
        await self.call("DELETE", f"/v1/nodes/{self.node_id}")

    async def peers(self, only: Sequence[str] | None = None) -> list[PeerInfo]:
        """The live nodes of our group, without us (of ``only``, when given: at most
        ``MAX_PEERS_PER_ANSWER`` node ids). Raises ``UnknownNode`` if we are not registered
        (any more); a requester only: ``HubTooOld`` if the hub does not know its query."""
        items = requester_query() if self.requester_only else []
        items += [("node", node) for node in only or ()]
        query = "?" + urlencode(items) if items else ""
        try:
            raw = await self._session_call("GET", PEERS_PATH + query, None, self._quick_timeout)
            answer = parse_answer(_PEERS, raw)
        except UnknownNode as exc:
            if not self.requester_only:
                raise
            raise HubTooOld(
                f"hub {self.hub_url} does not answer requester-only peer queries (it is older "
                f"than this swarmget): upgrade the hub ({exc})",
                exc.status,
            ) from exc
        return _valid_peers(answer.peers, self.hub_url)

    def _check_member(self) -> None:
        if self.requester_only:
            raise RequesterOnly("a requester-only hub client never registers")

    async def call(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        limits: aiohttp.ClientTimeout | None = None,
        *,
        session: SessionKey | None = None,
    ) -> bytes:
        """One signed request to the hub: the answer's body (at most
        ``MAX_HUB_ANSWER_BYTES``), or the error-tree exception for its failure (see the
        module doc). For callers that speak other hub routes (``swarmget.net.content_hub``).
        ``limits``: timeouts other than the client's (a heartbeat's are shorter);
        ``session``: signed with it, not the node key (a 401 then: ``HubSessionRefused``)."""
        url = URL(self.hub_url + path)
        body = json_body(payload) if payload is not None else b""
        if session is None:
            headers = signed_headers(
                self._secret, self._identity, method, url, body, now=self._clock()
            )
        else:
            headers = session_signed_headers(
                self._secret, session, node_id=self.node_id, method=method,
                path=url.raw_path_qs, body=body, now=self._clock(), nonce=new_nonce(),
            )  # fmt: skip
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method,
                url,
                data=body or None,
                headers=headers,
                timeout=limits or self._timeout,
                allow_redirects=False,
            ) as response:
                answer = await read_bounded(response.content, MAX_HUB_ANSWER_BYTES)
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise HubUnavailable(f"hub {self.hub_url} unreachable: {plain_words(exc)}") from exc
        if answer is None:
            raise HubUnavailable(
                f"hub {self.hub_url}: the answer to {method} {path} is longer than "
                f"{MAX_HUB_ANSWER_BYTES} bytes",
                status,
            )
        if status == 401 and session is not None:
            said = error_body(answer)
            raise HubSessionRefused(f"hub refused our session: {said.code} {said.message}", status)
        if status >= 300:
            raise _status_error(status, answer, f"{method} {path}", _seconds(retry_after))
        return answer


def _valid_peers(entries: list[Any], hub_url: str) -> list[PeerInfo]:
    """The well-formed entries, in the hub's order (at most ``MAX_PEERS_PER_ANSWER``)."""
    valid: list[PeerInfo] = []
    first_error: str | None = None
    for entry in entries:
        try:
            valid.append(PeerEntry.model_validate(entry))
        except pydantic.ValidationError as exc:
            first_error = first_error or _first_error(exc)
    if first_error is not None:
        skipped = len(entries) - len(valid)
        log.warning("hub %s listed %d malformed peers (skipped): %s", hub_url, skipped, first_error)
    if len(valid) > MAX_PEERS_PER_ANSWER:
        keep = sorted(random.sample(range(len(valid)), MAX_PEERS_PER_ANSWER))
        valid = [valid[i] for i in keep]
    return valid


def _first_error(exc: pydantic.ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc']) or 'entry'}: {first['msg']}"


def _status_error(
    status: int, answer: bytes, what: str, retry_after: float | None = None
) -> HubError:
    said = error_body(answer)
    text = f"hub refused {what}: {status} {said.message}".rstrip()
    kind = HUB_ERRORS.for_code(said.code, status)
    if issubclass(kind, HubUnavailable):
        return kind(text, status, retry_after=retry_after)
    return kind(text, status) if issubclass(kind, HubError) else HubRejected(text, status)


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After's delay-seconds (RFC 9110 10.2.3), at most ``MAX_HUB_WAIT``; None when
    absent or not a number of seconds (an HTTP date is not worth trusting a hub's clock)."""
    if retry_after is None or not retry_after.strip().isdigit():
        return None
    return min(float(retry_after.strip()), MAX_HUB_WAIT)


def parse_answer(adapter: pydantic.TypeAdapter[_T], answer: bytes) -> _T:
    """``answer`` read with ``adapter``; ``HubUnavailable`` when it is not what the hub's
    API promises."""
    try:
        return adapter.validate_json(answer)
    except pydantic.ValidationError as exc:
        raise HubUnavailable(f"the hub's answer is not what its API promises: {exc}") from exc


# --- several hubs, one registry ----------------------------------------------------------------


class HubApi(Protocol):
    """What a node needs of its hub: a ``HubClient`` or a ``HubPool``."""

    @property
    def hub_url(self) -> str:
        """The hub calls go to (a pool's current hub)."""
        ...

    async def register(self, registration: Registration) -> Registered: ...

    async def heartbeat(self, stats: Mapping[str, Any] | None = None) -> HeartbeatAnswer: ...

    async def leave(self) -> None: ...

    async def peers(self, only: Sequence[str] | None = None) -> list[PeerInfo]: ...

    @property
    def node_id(self) -> str:
        """The node the calls are signed as."""
        ...

    async def call(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> bytes:
        """A signed request to another hub route (``swarmget.net.content_hub``)."""
        ...


class HubSwitched(UnknownNode):
    """A ``HubPool`` moved to another hub than the one we registered with: register there.
    An ``UnknownNode``, so that ``run_membership`` registers again at once."""

    code = "hub_switched"


class HubPool:
    """Several hubs sharing one registry (one database), used as one hub with failover.

    Calls go to the *current* hub, at first the first one listed (with ``spread``: the one
    the node id's hash picks, so that the nodes of a swarm share the replicas' load instead
    of all using the first while it lives; the others follow in list order). When a call
    finds it unavailable (``HubUnavailable``: unreachable, timed out, 5xx), the pool moves to the
    next hub of the list (round robin) and stays there while it answers; it never moves back
    by itself, so nodes do not flap between hubs. Then:

    * ``register``, ``peers`` and ``leave`` go on with the next hubs at once, each tried at
      most once per call, and raise the last ``HubUnavailable`` when none answers;
    * ``heartbeat`` goes to the hub we registered with (or last heartbeated with); once the
      current hub is another (because this heartbeat, or any other call, found ours
      unavailable) it heartbeats the current hub at once: a replica of one registry knows
      us and answers (the node moved with one heartbeat); one that answers 404 or not at
      all raises ``HubSwitched`` and ``run_membership`` registers with the current hub.

    ``HubRejected`` and ``UnknownNode`` do not move the pool: every hub of one swarm would
    answer the same. A pool of one hub behaves like its ``HubClient``. Calls may run
    concurrently (the membership loop and downloads asking for peers). ``requester_only``:
    every client of the pool is one (see the module doc); ``peers`` fails over as above,
    also from a hub too old for the requester-only query (``HubTooOld``: during a rolling
    upgrade some replicas are), raising the last error when no hub answers.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        hub_urls: Sequence[str],
        secret: bytes,
        identity: NodeIdentity,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        requester_only: bool = False,
        spread: bool = False,
        sessions: bool = True,
    ) -> None:
        if not hub_urls:
            raise ValueError("a hub pool needs at least one hub URL")
        # the short heartbeat timeout is for moving on; one hub has nowhere to move to, and a
        # heartbeat slow because that hub is strained is better waited for than failed
        beat = heartbeat_timeout if len(hub_urls) > 1 else timeout
        self.clients = tuple(
            HubClient(
                session, url, secret, identity, timeout=timeout,
                connect_timeout=connect_timeout, heartbeat_timeout=beat,
                clock=clock, requester_only=requester_only, sessions=sessions,
            )
            for url in hub_urls
        )  # fmt: skip
        self.node_id = identity.node_id
        self._current = _hub_index(self.node_id, len(self.clients)) if spread else 0
        self._registered_at: int | None = None
        #: set (and replaced) after every answered register, heartbeat and leave:
        #: ``watched`` may have changed
        self._answered = asyncio.Event()

    @property
    def hub_url(self) -> str:
        return self.clients[self._current].hub_url

    async def register(self, registration: Registration) -> Registered:
        index, registered = await self._first_answer(lambda hub: hub.register(registration))
        self._registered_at = index
        self._changed()
        return registered

    async def heartbeat(self, stats: Mapping[str, Any] | None = None) -> HeartbeatAnswer:
        """Raises ``UnknownNode`` when the hub wants us to register again, and its subclass
        ``HubSwitched`` when we should register with the pool's current hub. A hub that is
        overloaded (an answer with Retry-After) is not left: its replicas share its load."""
        index = self._current
        if self._registered_at is not None and index != self._registered_at:
            return await self._heartbeat_elsewhere(index, stats)
        try:
            answer = await self.clients[index].heartbeat(stats)
        except HubUnavailable as exc:
            if exc.retry_after is not None or not self._move_on(index):
                raise
            return await self._heartbeat_elsewhere(self._current, stats)
        self._changed()
        return answer

    async def _heartbeat_elsewhere(
        self, index: int, stats: Mapping[str, Any] | None
    ) -> HeartbeatAnswer:
        """The first heartbeat to hub ``index``, not the one we registered with: a replica
        of one registry knows us already (no registration: after a replica dies its nodes
        move with one heartbeat each, not a crowd of registrations); a hub that does not
        (404) or does not answer raises ``HubSwitched``, and we register."""
        try:
            answer = await self.clients[index].heartbeat(stats)
        except UnknownNode as exc:
            raise HubSwitched(f"hub {self.hub_url} does not know us: {exc}", exc.status) from exc
        except HubUnavailable as exc:
            self._move_on(index)
            raise HubSwitched(f"{exc}; switching to hub {self.hub_url}", exc.status) from exc
        self._registered_at = index
        self._changed()
        return answer

    async def leave(self) -> None:
        await self._first_answer(lambda hub: hub.leave())
        self._registered_at = None
        self._changed()

    def _changed(self) -> None:
        answered, self._answered = self._answered, asyncio.Event()
        answered.set()

    async def watched_change(self, plan: tuple[int, str] | None) -> None:
        """Wait until ``watched()`` is another than ``plan``."""
        while self.watched() == plan:
            await self._answered.wait()

    def watched(self) -> tuple[int, str] | None:
        """The hub we heartbeat and its replica id, for another replica to watch
        (``swarmget.net.replica_watch``); None with one hub, before we registered, or
        when that hub names no replica (older)."""
        index = self._registered_at
        if index is None or len(self.clients) == 1:
            return None
        replica = self.clients[index].replica
        return None if replica is None else (index, replica)

    def replica_gone(self, index: int, replica: str, *, told_by: int) -> bool:
        """Hub ``told_by`` says replica ``replica``, hub ``index``, is gone: when that is
        still the hub we heartbeat, ``told_by`` (which just answered) becomes the current
        hub (the next heartbeat goes there, at once if the caller wakes the membership
        loop). True when we moved."""
        if self._registered_at != index or self.clients[index].replica != replica:
            return False
        if told_by != index and self._current != told_by:
            self._current = told_by
            log.warning(
                "hub %s is gone (said hub %s); now using it",
                self.clients[index].hub_url,
                self.hub_url,
            )
        return True

    async def peers(self, only: Sequence[str] | None = None) -> list[PeerInfo]:
        return (await self._first_answer(lambda hub: hub.peers(only)))[1]

    async def call(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> bytes:
        """``HubClient.call`` on the current hub, failing over like ``peers``."""
        return (await self._first_answer(lambda hub: hub.call(method, path, payload)))[1]

    async def _first_answer(self, call: Callable[[HubClient], Awaitable[_T]]) -> tuple[int, _T]:
        """``call`` on the current hub, then on the next ones while they are unavailable;
        (index of the hub that answered, its answer)."""
        start = self._current
        for step in range(len(self.clients)):
            index = (start + step) % len(self.clients)
            try:
                return index, await call(self.clients[index])
            except (HubUnavailable, HubTooOld):  # (too old: a replica not yet upgraded)
                self._move_on(index)
                if step == len(self.clients) - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _move_on(self, failed: int) -> bool:
        """Make the hub after ``failed`` the current one, unless another call already moved
        on from it; False when there is no other hub."""
        if len(self.clients) == 1:
            return False
        if self._current == failed:
            self._current = (failed + 1) % len(self.clients)
            log.warning(
                "hub %s unavailable; now using hub %s", self.clients[failed].hub_url, self.hub_url
            )
        return True


def _hub_index(node_id: str, count: int) -> int:
    """The hub of ``count`` that ``node_id`` starts with: spread evenly, and the same in
    every run of the node (a restarted node goes back to the hub that knows it)."""
    digest = hashlib.sha256(node_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count
