"""Session keys: a node's frequent hub requests checked with an HMAC, not Ed25519 (issue #17).

A signed request (``swarmget.core.auth``) carries an Ed25519 signature of the node's key,
whose check costs a hub ~100 µs, the largest single cost of a heartbeat. A node that
heartbeats every 5 s does not need to prove its identity with its long-term key each time:
it proves it once, when it registers (or re-keys), and agrees on a **session key** with the
hub then; later requests carry an HMAC under that key (~5 µs to check).

The agreement must stay secret on a LAN where hub traffic is plain HTTP and every member
holds the swarm secret: a key sent in clear could be sniffed by another member and used to
forge this node's heartbeats. So it is an ephemeral X25519 Diffie-Hellman bound to the
node's identity:

1. the node makes an ephemeral X25519 key pair and sends its public key inside its
   Ed25519-signed registration (or re-key request): the hub knows the key is the node's;
2. the hub makes its own ephemeral pair, and answers its public key and a session id
   (random, unique to this hub process);
3. both compute ``HKDF-SHA256(X25519 shared secret, salt = SESSION_VERSION, info = node id,
   session id, both public keys)``: 32 bytes that nobody else can compute. A member that
   sniffs both public keys lacks both private keys.

The hub's answer is not signed, and needs not be: a man in the middle who swaps the hub's
public key for his own shares a key with the node, but the hub then holds another one (made
with the node's public key, whose private half the man lacks), so his heartbeats for the node
fail, as do the node's: the node falls back to Ed25519 and re-keys (a denial of service,
which such a man has anyway by dropping packets).

A session-signed request carries these headers (no ``X-Swarm-Key`` or key signature)::

    X-Swarm-Node, X-Swarm-Time, X-Swarm-Nonce, X-Swarm-Signature   as in core.auth
    X-Swarm-Session            the session id the hub gave
    X-Swarm-Session-Signature  lowercase hex HMAC-SHA256(session key,
                               SESSION_VERSION \\n session id \\n canonical string)

The canonical string, the swarm HMAC (membership), the clock window and the nonce (replay)
rules are ``core.auth``'s, unchanged; only the identity proof differs. The receiver looks
the session up by (node id, session id): an unknown one is ``SessionUnknown`` (the node
falls back to Ed25519 and re-keys); a known one with a wrong HMAC is ``BadIdentity``.

Pure: the time and the keys' lookup come in from the caller; randomness is the OS's,
through ``cryptography`` and ``secrets``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from swarmget.core.auth import (
    HEADER_NODE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    Proof,
    SignedRequest,
    body_digest,
    canonical_string,
    check_not_before,
    check_request_parts,
    check_skew,
    find_headers,
    member_headers,
)
from swarmget.core.errors import AuthError, BadIdentity, SessionUnknown
from swarmget.core.identity import decode_b64, encode_b64

__all__ = [
    "HEADER_SESSION",
    "HEADER_SESSION_SIGNATURE",
    "SESSION_KEY_BYTES",
    "SESSION_VERSION",
    "EphemeralKey",
    "SessionKey",
    "accept_session",
    "decode_public_key",
    "has_session_headers",
    "is_valid_session_id",
    "session_signed_headers",
    "verify_session_signed",
]

HEADER_SESSION = "X-Swarm-Session"
HEADER_SESSION_SIGNATURE = "X-Swarm-Session-Signature"
SESSION_VERSION = "swarmget-session-v1"
SESSION_KEY_BYTES = 32
_X25519_BYTES = 32
_SESSION_ID_CHARS = 22  # 16 random bytes, base64url


def is_valid_session_id(text: str) -> bool:
    """Session ids are ``_SESSION_ID_CHARS`` characters of base64url."""
    return decode_b64(text, length=16) is not None


def decode_public_key(text: str) -> bytes | None:
    """A 32-byte X25519 public key from base64url (None: not one)."""
    return decode_b64(text, length=_X25519_BYTES)


@dataclass(frozen=True, slots=True)
class SessionKey:
    """An agreed session: its id (the hub's) and the 32-byte key (secret)."""

    session_id: str
    key: bytes = field(repr=False)


class EphemeralKey:
    """One X25519 key pair, used for one agreement (the node's side, or the hub's)."""

    __slots__ = ("_private", "public")

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public_b64(self) -> str:
        return encode_b64(self.public)

    def agree(
        self, peer_public: bytes, *, node_id: str, session_id: str, node_public: bytes
    ) -> SessionKey:
        """The session key with the holder of ``peer_public``; ``node_public`` says which
        of the two public keys is the node's (the derivation names both in one order).
        Raises ``ValueError`` for a public key that gives no shared secret (low order)."""
        shared = self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        hub_public = peer_public if node_public == self.public else self.public
        info = b"\n".join(
            (node_id.encode(), session_id.encode(), node_public, hub_public)  # fixed lengths
        )
        kdf = HKDF(
            algorithm=hashes.SHA256(),
            length=SESSION_KEY_BYTES,
            salt=SESSION_VERSION.encode(),
            info=info,
        )
        return SessionKey(session_id, kdf.derive(shared))


def accept_session(node_id: str, node_public: bytes) -> tuple[str, SessionKey]:
    """The hub's side: (its public key in base64url, the session) for a node that sent
    ``node_public`` in a request signed with its node key. Raises ``ValueError`` for a
    public key that gives no shared secret."""
    mine = EphemeralKey()
    session_id = secrets.token_urlsafe(16)
    session = mine.agree(
        node_public, node_id=node_id, session_id=session_id, node_public=node_public
    )
    return mine.public_b64, session


def _session_mac(key: bytes, session_id: str, canonical: bytes) -> str:
    message = b"%s\n%s\n%s" % (SESSION_VERSION.encode(), session_id.encode(), canonical)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def session_signed_headers(
    secret: bytes,
    session: SessionKey,
    *,
    node_id: str,
    method: str,
    path: str,
    body: bytes,
    now: float,
    nonce: str,
) -> dict[str, str]:
    """The headers that authenticate this request as ``node_id``'s by its session. The
    parts are checked as ``core.auth.sign`` checks them (``ValueError``: our own bug)."""
    canonical, headers = member_headers(
        secret, node_id=node_id, method=method, path=path, body=body, now=now, nonce=nonce
    )
    headers[HEADER_SESSION] = session.session_id
    headers[HEADER_SESSION_SIGNATURE] = _session_mac(session.key, session.session_id, canonical)
    return headers


def has_session_headers(headers: Mapping[str, str]) -> bool:
    """Whether a request claims a session (then ``verify_session_signed`` checks it)."""
    return HEADER_SESSION in headers


_SESSION_HEADERS = (
    HEADER_NODE,
    HEADER_TIME,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_SESSION,
    HEADER_SESSION_SIGNATURE,
)


def verify_session_signed(
    secret: bytes,
    key_of: Callable[[str, str], bytes | None],
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    window: float,
    not_before: float | None = None,
) -> SignedRequest:
    """Check a session-signed request; ``key_of(node_id, session_id)`` is the receiver's
    key of that session (None: it has none). Order: well-formed headers (each once), the
    swarm HMAC, the session (``SessionUnknown``), its HMAC (``BadIdentity``), clock skew,
    ``not_before``. The replay check is the caller's, as with ``core.auth.verify_signed``."""
    found = find_headers(headers, _SESSION_HEADERS, what="session-signed request")
    node_id, nonce, session_id = found[HEADER_NODE], found[HEADER_NONCE], found[HEADER_SESSION]
    stamp = found[HEADER_TIME]
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise AuthError(f"invalid {HEADER_TIME}: must be integer unix seconds")
    check_request_parts(method=method, path=path, node_id=node_id, nonce=nonce)
    if not is_valid_session_id(session_id):
        raise AuthError(f"invalid {HEADER_SESSION}")
    timestamp = int(stamp)
    canonical = canonical_string(
        method=method,
        path=path,
        digest=body_digest(body),
        timestamp=timestamp,
        node_id=node_id,
        nonce=nonce,
    )
    expected = hmac.new(secret, canonical, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, found[HEADER_SIGNATURE]):
        raise AuthError("bad signature: wrong swarm secret, or the request was altered")
    key = key_of(node_id, session_id)
    if key is None:
        raise SessionUnknown(
            f"session {session_id} of node {node_id} is not known here (another hub, a "
            "restart, or expired): sign with the node key and agree on a new one"
        )
    if not hmac.compare_digest(
        _session_mac(key, session_id, canonical), found[HEADER_SESSION_SIGNATURE]
    ):
        raise BadIdentity("bad session signature: not signed with the node's session key")
    check_skew(timestamp, now=now, window=window)
    if not_before is not None:
        check_not_before(timestamp, not_before=not_before)
    return SignedRequest(node_id=node_id, timestamp=timestamp, nonce=nonce, proof=Proof.SESSION)
