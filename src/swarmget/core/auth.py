"""Signed requests between the members of a swarm, with one shared secret.

Every node↔node and node↔hub request carries four headers::

    X-Swarm-Node       the sender's node id
    X-Swarm-Time       when it was signed, integer unix seconds
    X-Swarm-Nonce      a random token the sender never reuses
    X-Swarm-Signature  lowercase hex HMAC-SHA256(secret, canonical string)

and the canonical string is these lines joined by ``\\n``::

    swarmget-v1
    METHOD                 upper case
    /path?query            the request target exactly as sent on the wire (still %-encoded)
    sha256(body)           lowercase hex, of the raw body bytes (empty body: sha256(b""))
    time
    node id
    nonce

Why each part: method, target and body digest pin *what* is asked, so a captured signature
cannot be moved to another route or body; node id pins *who*; time bounds *when* (a
receiver rejects anything more than ``window`` seconds off its own clock, and says it is a
clock problem); the nonce makes each request unique inside that window, so a receiver that
remembers the nonces it saw (``ReplayCache``) refuses a request sent twice. Node ids and
nonces are restricted to characters that cannot contain the separator, so the string is
unambiguous. Signatures are compared with ``hmac.compare_digest``.

This module is pure: the time comes in as ``now`` and nonces come from the caller.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
from collections.abc import Mapping

from swarmget.core.errors import AuthError, InvalidSecret

__all__ = [
    "DEFAULT_WINDOW",
    "HEADER_NODE",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIME",
    "MIN_SECRET_BYTES",
    "ReplayCache",
    "body_digest",
    "canonical_string",
    "is_valid_node_id",
    "parse_secret",
    "sign",
    "verify",
]

HEADER_NODE = "X-Swarm-Node"
HEADER_TIME = "X-Swarm-Time"
HEADER_NONCE = "X-Swarm-Nonce"
HEADER_SIGNATURE = "X-Swarm-Signature"
_AUTH_HEADERS = (HEADER_NODE, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE)

SIGNATURE_VERSION = "swarmget-v1"
#: Largest accepted difference, in seconds, between the signer's clock and the receiver's.
DEFAULT_WINDOW = 30.0
#: Shortest accepted shared secret.
MIN_SECRET_BYTES = 16
#: How many nonces a ReplayCache holds at most before it refuses new requests.
DEFAULT_REPLAY_ENTRIES = 100_000

_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_METHOD = re.compile(r"[A-Z]{1,16}")
_TARGET = re.compile(r"/[\x21-\x7e]*")  # printable ASCII without spaces: an encoded target
_TIME = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_valid_node_id(node_id: str) -> bool:
    """Node ids are 1-128 characters of ``A-Z a-z 0-9 . _ : -``, starting alphanumeric."""
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
    method: str,
    path: str,
    body: bytes,
    node_id: str,
    now: float,
    nonce: str,
) -> dict[str, str]:
    """The four headers that authenticate this request. ``path`` is the target as sent:
    path and query, %-encoded. Raises ``ValueError`` on malformed input (our own bug)."""
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
    return {
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
    replay: ReplayCache | None = None,
) -> str:
    """Check a request's signature and return the node id that signed it.

    Give exactly one of ``body`` (raw bytes) or ``body_digest`` (its lowercase hex
    sha256). Order of checks: well-formed headers, signature, clock skew, then the replay
    cache (only a genuine, timely request uses up its nonce). Raises ``AuthError``.
    """
    digest = _digest_of(body, body_digest)
    node_id, timestamp, nonce, signature = _auth_fields(headers)
    _check_parts(method=method, path=path, node_id=node_id, nonce=nonce, error=AuthError)
    canonical = canonical_string(
        method=method, path=path, digest=digest, timestamp=timestamp, node_id=node_id, nonce=nonce
    )
    if not hmac.compare_digest(_signature(secret, canonical), signature):
        raise AuthError("bad signature: wrong swarm secret, or the request was altered")
    check_skew(timestamp, now=now, window=window)
    if replay is not None:
        replay.check_and_remember(node_id, nonce, timestamp=timestamp, now=now)
    return node_id


def _digest_of(body: bytes | None, digest: str | None) -> str:
    if (body is None) == (digest is None):
        raise ValueError("give exactly one of body or body_digest")
    if body is not None:
        return hashlib.sha256(body).hexdigest()
    assert digest is not None
    if not _DIGEST.fullmatch(digest):
        raise ValueError("body_digest must be a lowercase hex sha256")
    return digest


def _auth_fields(headers: Mapping[str, str]) -> tuple[str, int, str, str]:
    """(node id, timestamp, nonce, signature) from the headers, names case-insensitive."""
    wanted = {name.lower(): name for name in _AUTH_HEADERS}
    found: dict[str, str] = {}
    for key, value in headers.items():
        name = wanted.get(key.lower())
        if name is None:
            continue
        if name in found:
            raise AuthError(f"header {name} given more than once")
        found[name] = value
    missing = [name for name in _AUTH_HEADERS if name not in found]
    if missing:
        raise AuthError("unsigned request: missing " + ", ".join(missing))
    if not _TIME.fullmatch(found[HEADER_TIME]):
        raise AuthError(f"invalid {HEADER_TIME}: must be integer unix seconds")
    if not _SIGNATURE.fullmatch(found[HEADER_SIGNATURE]):
        raise AuthError(f"invalid {HEADER_SIGNATURE}: must be 64 lowercase hex digits")
    timestamp = int(found[HEADER_TIME])
    return found[HEADER_NODE], timestamp, found[HEADER_NONCE], found[HEADER_SIGNATURE]


def check_skew(timestamp: float, *, now: float, window: float = DEFAULT_WINDOW) -> None:
    """Raise ``AuthError`` naming the clock skew when ``timestamp`` is outside ±window."""
    skew = now - timestamp
    if abs(skew) <= window:
        return
    direction = "behind" if skew > 0 else "ahead of"
    raise AuthError(
        f"clock skew: the request's time is {abs(skew):.0f} s {direction} the receiver's clock "
        f"(allowed ±{window:.0f} s); check the clocks (NTP) of both machines"
    )


class ReplayCache:
    """Remembers the (node id, nonce) pairs of recent requests and refuses a second use.

    An entry is kept until its request's timestamp leaves the window (``timestamp +
    window``): after that the clock-skew check refuses the request anyway. At most
    ``max_entries`` live entries are kept; when that many requests arrived within one window
    the cache refuses new ones rather than forget a nonce that could still be replayed.
    """

    __slots__ = ("_expiry", "_seen", "max_entries", "window")

    def __init__(
        self, *, window: float = DEFAULT_WINDOW, max_entries: int = DEFAULT_REPLAY_ENTRIES
    ) -> None:
        if window <= 0 or max_entries <= 0:
            raise ValueError("window and max_entries must be positive")
        self.window = window
        self.max_entries = max_entries
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[float, str, str]] = []  # heap of (expires_at, node, nonce)

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_remember(self, node_id: str, nonce: str, *, timestamp: float, now: float) -> None:
        """Raise ``AuthError`` if this (node, nonce) was seen and has not expired."""
        self.expire(now)
        key = (node_id, nonce)
        if key in self._seen:
            raise AuthError("replayed request: this nonce was already used")
        if len(self._seen) >= self.max_entries:
            raise AuthError("too many recent requests to check for replays; try again shortly")
        self._seen.add(key)
        heapq.heappush(self._expiry, (timestamp + self.window, node_id, nonce))

    def expire(self, now: float) -> None:
        """Forget every entry whose request would now be refused for its age."""
        while self._expiry and self._expiry[0][0] < now:
            _, node_id, nonce = heapq.heappop(self._expiry)
            self._seen.discard((node_id, nonce))


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
