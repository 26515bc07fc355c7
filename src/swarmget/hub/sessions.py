"""The session keys one hub process agreed with its nodes (issue #17; the scheme is
``swarmget.core.session_auth``).

A node sends an ephemeral X25519 public key with its registration, with a heartbeat signed
with its node key (a node that holds no session here: it moved from another replica, or
this hub restarted), or with ``POST /v1/nodes/{id}/session`` (older nodes; all three signed
with its node key); the hub agrees a session and answers its id and the hub's public key.
From then on the node's **heartbeats and peers queries** may be signed with the session key
(an HMAC, ~5 µs to check, instead of an Ed25519 verification, ~100 µs); every other
request (registering, leaving, re-keying, the content index) still needs the node key.

Where the keys live: **in this process's memory only**, never in the registry database.
Replicas on one PostgreSQL therefore key separately: a node that moves to another replica
holds no session there (or is answered 401 ``session_unknown``), signs that heartbeat with
its node key (the fallback, always valid) and agrees on a new session with the new replica
in the same heartbeat; a restarted hub forgets every session the same way. The cost is one
Ed25519 check and one key agreement per node and move (one request: before 2026-12-07 the
re-key was a second one, bench/README "Moves"); the gain is that nobody who can read the
database (a backup, a replica's operator, a leaked dump) can forge a node's heartbeats,
which a stored key would allow.

Bounds: at most ``max_sessions`` sessions (one per node; a new one replaces the node's
previous one); past that the oldest is dropped (its node gets ``session_unknown`` and
re-keys). A node that leaves loses its session.
"""

from __future__ import annotations

from aiohttp import web

from swarmget.core.errors import AuthError
from swarmget.core.session_auth import SessionKey, accept_session, decode_public_key
from swarmget.hub.admission import RequestKind, request_kind
from swarmget.hub.refusal import HubRefusal
from swarmget.protocol.hub import SessionGrant

__all__ = ["DEFAULT_MAX_SESSIONS", "HubSessions"]

#: Sessions one hub process holds at most (~200 bytes each).
DEFAULT_MAX_SESSIONS = 262_144
#: Requests a session key may sign; any other needs the node key.
SESSION_KINDS = frozenset({RequestKind.HEARTBEAT, RequestKind.PEERS})


class HubSessions:
    """Node id → its session with this process (see module doc). One event loop."""

    def __init__(self, *, max_sessions: int = DEFAULT_MAX_SESSIONS) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self._keys: dict[str, SessionKey] = {}
        #: sessions agreed since start, requests that named a held one (for ``/metrics``)
        self.agreed = 0
        self.used = 0

    def __len__(self) -> int:
        return len(self._keys)

    def grant(self, node_id: str, node_key: str) -> SessionGrant:
        """A new session for ``node_id`` (authenticated by its node key) from its public
        key ``node_key`` (base64url, already validated by the protocol model); replaces
        the node's previous one. ``HubRefusal`` ``bad_request`` for a key that gives no
        shared secret."""
        public = decode_public_key(node_key)
        if public is None:
            raise HubRefusal("bad_request", "session_key: not an X25519 public key")
        try:
            hub_key, session = accept_session(node_id, public)
        except ValueError as exc:
            raise HubRefusal("bad_request", f"session_key: {exc}") from exc
        self._keys.pop(node_id, None)
        while len(self._keys) >= self.max_sessions:
            del self._keys[next(iter(self._keys))]  # the oldest
        self._keys[node_id] = session
        self.agreed += 1
        return SessionGrant(session_id=session.session_id, hub_key=hub_key)

    def forget(self, node_id: str) -> None:
        self._keys.pop(node_id, None)

    def key_of(self, node_id: str, session_id: str) -> bytes | None:
        """The key of ``node_id``'s session ``session_id`` (None: not held here)."""
        session = self._keys.get(node_id)
        if session is None or session.session_id != session_id:
            return None
        self.used += 1
        return session.key

    def counts(self) -> tuple[int, int, int]:
        """(sessions held, agreed since start, requests that named a held one)."""
        return len(self._keys), self.agreed, self.used

    def middleware_lookup(
        self, request: web.Request, node_id: str, session_id: str
    ) -> bytes | None:
        """The auth middleware's ``session_key``: only heartbeats and peers queries may be
        signed with a session (``AuthError`` for any other request)."""
        if request_kind(request) not in SESSION_KINDS:
            raise AuthError("this request must be signed with the node key, not a session")
        return self.key_of(node_id, session_id)
