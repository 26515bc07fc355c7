"""Signed requests between the members of a swarm: one shared secret, one key per node.

Every node↔node and node↔hub request carries six headers::

    X-Swarm-Node           the sender's node id (the fingerprint of its public key)
    X-Swarm-Time           when it was signed, integer unix seconds
    X-Swarm-Nonce          a random token the sender never reuses
    X-Swarm-Signature      lowercase hex HMAC-SHA256(secret, canonical string)
    X-Swarm-Key            the sender's Ed25519 public key, URL-safe base64 (no padding)
    X-Swarm-Key-Signature  its Ed25519 signature of the canonical string, same encoding

and the canonical string is these lines joined by ``\\n``::

    swarmget-v2
    METHOD                 upper case
    /path?query            the request target exactly as sent on the wire (still %-encoded)
    sha256(body)           lowercase hex, of the raw body bytes (empty body: sha256(b""))
    time
    node id
    nonce

Why each part: method, target and body digest pin *what* is asked, so a captured signature
cannot be moved to another route or body; time bounds *when* (a receiver rejects anything
more than ``window`` seconds off its own clock, and says it is a clock problem); the nonce
makes each request unique inside that window, so a receiver that remembers the nonces it saw
(``swarmget.core.replay.ReplayCache``) refuses a request sent twice. Node ids and nonces are
restricted to characters that cannot contain the separator, so the string is unambiguous.

*Who* is two proofs (``swarmget.core.identity``): the HMAC says the sender holds the swarm
secret (membership: outsiders are refused before any costlier check), and the key signature
says it holds the private key whose fingerprint is the node id it claims (identity: a member
cannot speak as another member). Signatures are compared with ``hmac.compare_digest``;
Ed25519 verification is ``cryptography``'s.

Replays: a receiver that keeps its nonces only in memory cannot know, after a restart, what
it saw before; ``verify(not_before=...)`` (its start time) refuses anything signed earlier.
``ReplayCache`` (``swarmget.core.replay``) gives every sender its own share, so one member
flooding it with nonces refuses only its own requests (see its docstring).

This module is pure: the time comes in as ``now`` and nonces come from the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from swarmget.core.errors import (
    AuthError,
    BadIdentity,
    ClockSkew,
    InvalidSecret,
    ReplayedRequest,
)
from swarmget.core.identity import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    NodeIdentity,
    decode_b64,
    encode_b64,
    node_id_of,
    verify_key_signature,
)

if TYPE_CHECKING:
    from swarmget.core.replay import ReplayCache

__all__ = [
    "DEFAULT_WINDOW",
    "HEADER_KEY",
    "HEADER_KEY_SIGNATURE",
    "HEADER_NODE",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIME",
    "MIN_SECRET_BYTES",
    "Proof",
    "SignedRequest",
    "body_digest",
    "canonical_string",
    "check_not_before",
    "check_request_parts",
    "find_headers",
    "is_valid_node_id",
    "member_headers",
    "parse_secret",
    "sign",
    "verify",
    "verify_signed",
]

HEADER_NODE = "X-Swarm-Node"
HEADER_TIME = "X-Swarm-Time"
HEADER_NONCE = "X-Swarm-Nonce"
HEADER_SIGNATURE = "X-Swarm-Signature"
HEADER_KEY = "X-Swarm-Key"
HEADER_KEY_SIGNATURE = "X-Swarm-Key-Signature"
_AUTH_HEADERS = (
    HEADER_NODE,
    HEADER_TIME,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_KEY,
    HEADER_KEY_SIGNATURE,
)

SIGNATURE_VERSION = "swarmget-v2"
#: Largest accepted difference, in seconds, between the signer's clock and the receiver's.
DEFAULT_WINDOW = 30.0
#: Shortest accepted shared secret.
MIN_SECRET_BYTES = 16
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_METHOD = re.compile(r"[A-Z]{1,16}")
_TARGET = re.compile(r"/[\x21-\x7e]*")  # printable ASCII without spaces: an encoded target
_TIME = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_valid_node_id(node_id: str) -> bool:
    """Node ids are 1-128 characters of ``A-Z a-z 0-9 . _ : -``, starting alphanumeric.
    (The shape rule: ids made since node keys are fingerprints, ``core.identity``, which
    always match it; a signed request proves its id, see the module doc.)"""
    return _NODE_ID.fullmatch(node_id) is not None


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_string(
    *, method: str, path: str, digest: str, timestamp: int, node_id: str, nonce: str
) -> bytes:
    """The bytes that are signed. Callers have validated every part (see ``sign``)."""
    parts = (SIGNATURE_VERSION, method, path, digest, str(timestamp), node_id, nonce)
    return "\n".join(parts).encode("ascii")


def _signature(secret: bytes, canonical: bytes) -> str:
    return hmac.new(secret, canonical, hashlib.sha256).hexdigest()


def sign(
    secret: bytes,
    *,
    identity: NodeIdentity,
    method: str,
    path: str,
    body: bytes,
    now: float,
    nonce: str,
) -> dict[str, str]:
    """The six headers that authenticate this request as ``identity``'s. ``path`` is the
    target as sent: path and query, %-encoded. Raises ``ValueError`` on malformed input
    (our own bug)."""
    canonical, headers = member_headers(
        secret, node_id=identity.node_id, method=method, path=path, body=body, now=now,
        nonce=nonce,
    )  # fmt: skip
    headers[HEADER_KEY] = encode_b64(identity.public_key)
    headers[HEADER_KEY_SIGNATURE] = encode_b64(identity.sign(canonical))
    return headers


def member_headers(
    secret: bytes, *, node_id: str, method: str, path: str, body: bytes, now: float, nonce: str
) -> tuple[bytes, dict[str, str]]:
    """The canonical string of a request and the four headers every signed request has
    (node, time, nonce, the swarm secret's HMAC); the caller adds the proof of who sends it
    (the node key's signature here, a session's MAC in ``core.session_auth``). Raises
    ``ValueError`` when a part is malformed (our own bug)."""
    method = method.upper()
    _check_parts(method=method, path=path, node_id=node_id, nonce=nonce, error=ValueError)
    timestamp = int(now)
    canonical = canonical_string(
        method=method,
        path=path,
        digest=body_digest(body),
        timestamp=timestamp,
        node_id=node_id,
        nonce=nonce,
    )
    return canonical, {
        HEADER_NODE: node_id,
        HEADER_TIME: str(timestamp),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: _signature(secret, canonical),
    }


def _check_parts(
    *, method: str, path: str, node_id: str, nonce: str, error: type[Exception]
) -> None:
    if not _METHOD.fullmatch(method):
        raise error(f"invalid method {method!r}")
    if not _TARGET.fullmatch(path):
        raise error(f"invalid request target {path!r}: must be an encoded path starting with /")
    if not is_valid_node_id(node_id):
        raise error(f"invalid node id {node_id!r}")
    if not _NONCE.fullmatch(nonce):
        raise error("invalid nonce: must be 16-64 characters of A-Z a-z 0-9 _ -")


def check_request_parts(*, method: str, path: str, node_id: str, nonce: str) -> None:
    """``AuthError`` unless method, target, node id and nonce have their shapes (a signed
    request's parts: see the module doc; also ``core.session_auth``'s)."""
    _check_parts(method=method, path=path, node_id=node_id, nonce=nonce, error=AuthError)


class Proof(Enum):
    """How a signed request proved who sent it."""

    #: the node key's Ed25519 signature (this module): the long-term identity
    NODE_KEY = "node_key"
    #: a session's HMAC (``core.session_auth``): a key agreed earlier under the node key
    SESSION = "session"


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedRequest:
    """What ``verify`` established: who signed, when, with which nonce, and how."""

    node_id: str
    timestamp: int
    nonce: str
    proof: Proof


def verify(
    secret: bytes,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    now: float,
    body: bytes | None = None,
    body_digest: str | None = None,
    window: float = DEFAULT_WINDOW,
    not_before: float | None = None,
    replay: ReplayCache | None = None,
    origin: str | None = None,
) -> str:
    """Check a request's signatures and return the node id that signed it.

    Give exactly one of ``body`` (raw bytes) or ``body_digest`` (its lowercase hex
    sha256). Order of checks: well-formed headers, the swarm HMAC, the node key (its
    fingerprint is the node id, and it signed the same string), clock skew, ``not_before``
    (``check_not_before``), then the replay cache (only a genuine, timely request uses up its
    nonce; ``origin``, the sender's address, caps how many node ids one address may have
    there). Raises ``AuthError`` (``BadIdentity``, ``ClockSkew``, ``ReplayedRequest``,
    ``ReplayCacheFull`` for those checks).
    """
    signed = verify_signed(
        secret,
        method=method,
        path=path,
        headers=headers,
        now=now,
        body=body,
        body_digest=body_digest,
        window=window,
        not_before=not_before,
    )
    if replay is not None:
        replay.check_and_remember(
            signed.node_id, signed.nonce, timestamp=signed.timestamp, now=now, origin=origin
        )
    return signed.node_id


def verify_signed(
    secret: bytes,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    now: float,
    body: bytes | None = None,
    body_digest: str | None = None,
    window: float = DEFAULT_WINDOW,
    not_before: float | None = None,
) -> SignedRequest:
    """``verify`` without the replay cache: for receivers that check nonces elsewhere (a
    hub's shared table). Returns what the signature established."""
    digest = _digest_of(body, body_digest)
    fields = _auth_fields(headers)
    node_id, timestamp, nonce = fields.node_id, fields.timestamp, fields.nonce
    _check_parts(method=method, path=path, node_id=node_id, nonce=nonce, error=AuthError)
    canonical = canonical_string(
        method=method, path=path, digest=digest, timestamp=timestamp, node_id=node_id, nonce=nonce
    )
    if not hmac.compare_digest(_signature(secret, canonical), fields.signature):
        raise AuthError("bad signature: wrong swarm secret, or the request was altered")
    _check_identity(fields, canonical)
    check_skew(timestamp, now=now, window=window)
    if not_before is not None:
        check_not_before(timestamp, not_before=not_before)
    return SignedRequest(node_id=node_id, timestamp=timestamp, nonce=nonce, proof=Proof.NODE_KEY)


def _check_identity(fields: _Fields, canonical: bytes) -> None:
    key = decode_b64(fields.key, length=PUBLIC_KEY_BYTES)
    if key is None:
        raise BadIdentity(f"invalid {HEADER_KEY}: must be a 32-byte Ed25519 key in base64url")
    if node_id_of(key) != fields.node_id:
        raise BadIdentity(
            f"node id {fields.node_id} is not the id of the key that signed: node ids are "
            "fingerprints of node keys, and only the holder of a node's key may use its id"
        )
    signature = decode_b64(fields.key_signature, length=SIGNATURE_BYTES)
    if signature is None or not verify_key_signature(key, signature, canonical):
        raise BadIdentity("bad key signature: the request was not signed by its node's key")


def _digest_of(body: bytes | None, digest: str | None) -> str:
    if (body is None) == (digest is None):
        raise ValueError("give exactly one of body or body_digest")
    if body is not None:
        return hashlib.sha256(body).hexdigest()
    assert digest is not None
    if not _DIGEST.fullmatch(digest):
        raise ValueError("body_digest must be a lowercase hex sha256")
    return digest


@dataclass(frozen=True, slots=True)
class _Fields:
    node_id: str
    timestamp: int
    nonce: str
    signature: str
    key: str
    key_signature: str


def find_headers(
    headers: Mapping[str, str], names: tuple[str, ...], *, what: str
) -> dict[str, str]:
    """The values of the headers ``names`` (each found case-insensitively, exactly once:
    ``AuthError`` otherwise, ``what`` naming the kind of request in the message)."""
    wanted = {name.lower(): name for name in names}
    found: dict[str, str] = {}
    for key, value in headers.items():
        name = wanted.get(key.lower())
        if name is None:
            continue
        if name in found:
            raise AuthError(f"header {name} given more than once")
        found[name] = value
    missing = [name for name in names if name not in found]
    if missing:
        raise AuthError(f"{what}: missing " + ", ".join(missing))
    return found


def _auth_fields(headers: Mapping[str, str]) -> _Fields:
    """The auth headers' values, names case-insensitive, each exactly once."""
    found = find_headers(headers, _AUTH_HEADERS, what="unsigned request")
    if not _TIME.fullmatch(found[HEADER_TIME]):
        raise AuthError(f"invalid {HEADER_TIME}: must be integer unix seconds")
    if not _SIGNATURE.fullmatch(found[HEADER_SIGNATURE]):
        raise AuthError(f"invalid {HEADER_SIGNATURE}: must be 64 lowercase hex digits")
    return _Fields(
        node_id=found[HEADER_NODE],
        timestamp=int(found[HEADER_TIME]),
        nonce=found[HEADER_NONCE],
        signature=found[HEADER_SIGNATURE],
        key=found[HEADER_KEY],
        key_signature=found[HEADER_KEY_SIGNATURE],
    )


def check_skew(timestamp: float, *, now: float, window: float = DEFAULT_WINDOW) -> None:
    """Raise ``ClockSkew`` naming the skew when ``timestamp`` is outside ±window."""
    skew = now - timestamp
    if abs(skew) <= window:
        return
    direction = "behind" if skew > 0 else "ahead of"
    raise ClockSkew(
        f"clock skew: the request's time is {abs(skew):.0f} s {direction} the receiver's clock "
        f"(allowed ±{window:.0f} s); check the clocks (NTP) of both machines"
    )


def check_not_before(timestamp: int, *, not_before: float) -> None:
    """Raise ``ReplayedRequest`` when the request was signed before ``not_before``.

    A receiver whose replay cache lives in memory passes its start time: a request signed
    before it started may have been seen by its previous run, so it cannot be told from a
    replay. Timestamps are whole seconds: a request signed in the second the receiver
    started counts as earlier (a sender retries; one whose clock lags the receiver's is
    refused for that long after each restart of the receiver).
    """
    if timestamp < not_before:
        raise ReplayedRequest(
            f"the request was signed {not_before - timestamp:.0f} s before this receiver "
            "started: it may be a replay, sign it again (if this persists, check the clocks)"
        )


def parse_secret(raw: bytes, *, source: str) -> bytes:
    """The shared secret from a file's or variable's bytes, surrounding whitespace removed
    (so a trailing newline does not matter). ``source`` names where it came from, for the
    error message. Raises ``InvalidSecret`` when it is empty or shorter than 16 bytes."""
    secret = raw.strip()
    if not secret:
        raise InvalidSecret(f"the swarm secret from {source} is empty")
    if len(secret) < MIN_SECRET_BYTES:
        raise InvalidSecret(
            f"the swarm secret from {source} is too short ({len(secret)} bytes; at least "
            f"{MIN_SECRET_BYTES} are needed, e.g. the output of `openssl rand -hex 32`)"
        )
    return secret
