"""Node identity: an Ed25519 key pair per node, and a node id derived from its public key.

Theory: the swarm secret (``core.auth``'s HMAC) proves *membership* — "one of us signed
this" — but every member holds it, so it cannot say *which* member. Each node therefore has
its own Ed25519 key pair, and its node id is a fingerprint of the public key (as Syncthing's
device ids are)::

    node id = base32(sha256(public key))[:32], lower case      (160 bits, ``a-z 2-7``)

A signed request carries the public key and an Ed25519 signature over the same canonical
string the HMAC covers. A receiver checks ``node_id_of(key) == claimed node id`` and the
signature, so claiming a node id needs that node's private key: a member can mint new ids
(new keys) as it pleases, but never take over someone else's.

Derived ids satisfy the older, general id rule (``core.auth.is_valid_node_id``), so every
place that only checks the shape of an id keeps working; ``is_derived_node_id`` is the
stricter shape of a fingerprint.

Pure: key generation reads the OS's randomness through ``cryptography`` but nothing here
opens files or sockets (the key file is ``swarmget.node.keyfile``'s business).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

__all__ = [
    "NodeIdentity",
    "PUBLIC_KEY_BYTES",
    "SEED_BYTES",
    "SIGNATURE_BYTES",
    "decode_b64",
    "encode_b64",
    "is_derived_node_id",
    "node_id_of",
    "verify_key_signature",
]

PUBLIC_KEY_BYTES = 32
SEED_BYTES = 32
SIGNATURE_BYTES = 64
#: Characters of the base32 fingerprint kept in a node id (5 bits each: 160 bits).
NODE_ID_CHARS = 32

_DERIVED = re.compile(rf"[a-z2-7]{{{NODE_ID_CHARS}}}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def node_id_of(public_key: bytes) -> str:
    """The node id of a raw 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError("an Ed25519 public key is 32 bytes")
    digest = hashlib.sha256(b"swarmget-node-id\n" + public_key).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:NODE_ID_CHARS]


def is_derived_node_id(node_id: str) -> bool:
    """Whether ``node_id`` has the shape of a key fingerprint (``node_id_of``)."""
    return _DERIVED.fullmatch(node_id) is not None


def encode_b64(raw: bytes) -> str:
    """URL-safe base64 without padding (how keys and signatures travel in headers)."""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_b64(text: str, *, length: int) -> bytes | None:
    """The bytes of ``encode_b64`` text, or None unless it is exactly ``length`` bytes."""
    if not _B64URL.fullmatch(text) or len(text) > 2 * length:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == length and encode_b64(raw) == text else None


def verify_key_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``data``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """A node's key pair and the node id it implies. Make one with ``generate`` (a fresh,
    e.g. ephemeral, identity) or ``from_seed`` (the 32 bytes kept in a key file)."""

    _key: Ed25519PrivateKey = field(repr=False)
    public_key: bytes = field(init=False)
    node_id: str = field(init=False)

    def __post_init__(self) -> None:
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "node_id", node_id_of(public))

    @classmethod
    def generate(cls) -> NodeIdentity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeIdentity:
        """Raises ``ValueError`` unless ``seed`` is 32 bytes."""
        if len(seed) != SEED_BYTES:
            raise ValueError("an Ed25519 private key seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        """The 32 private bytes to keep (secret: a key file is 0600)."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)
