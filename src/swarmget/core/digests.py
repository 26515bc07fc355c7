"""Expected digests of the whole file, and checking computed ones against them.

Digests come from two places:

* the user's ``--checksum ALG:HEX`` (``parse_checksum_spec``); any of md5, sha1, sha256,
  sha512 is accepted, because users copy whatever the download page publishes;
* the origin's ``Repr-Digest`` field (RFC 9530 §3; ``parse_digest_fields``). Only the
  algorithms RFC 9530 §5 registers as active, ``sha-256`` and ``sha-512``, are used;
  the deprecated ones (md5, sha, adler, crc32c, unixsum, unixcksum) are ignored.

Which header may be trusted for the whole file (the origin client applies this):
``Repr-Digest`` describes the selected representation, so it is valid on a HEAD, a 200
and a 206 alike. ``Content-Digest`` (RFC 9530 §2) describes only the bytes of *that*
message: on a 206 it is the digest of one range, on a HEAD of nothing we received, so it
is never used for the file.

Algorithm names use ``hashlib`` spelling (``sha256``) so that ``hashlib.new(d.algorithm)``
works; values are lowercase hex.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from swarmget.core.errors import InvalidChecksum

__all__ = [
    "HEX_LENGTHS",
    "Digest",
    "DigestSet",
    "Mismatch",
    "parse_checksum_spec",
    "parse_digest_fields",
]

#: Algorithms we can verify, in hashlib naming, with the length of their hex digest.
HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
# User spellings accepted by --checksum, besides the hashlib names.
_ALIASES = {"sha-1": "sha1", "sha-256": "sha256", "sha-512": "sha512"}
# RFC 9530 §5 (Hash Algorithms for HTTP Digest Fields registry), status "Active" only.
_FIELD_ALGORITHMS = {"sha-256": "sha256", "sha-512": "sha512"}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, slots=True)
class Digest:
    """One expected digest: ``algorithm`` in hashlib naming, ``value`` in lowercase hex."""

    algorithm: str
    value: str

    def __post_init__(self) -> None:
        length = HEX_LENGTHS.get(self.algorithm)
        if length is None:
            raise ValueError(f"unsupported digest algorithm {self.algorithm!r}")
        if len(self.value) != length or not _HEX.fullmatch(self.value):
            raise ValueError(f"{self.algorithm} digest must be {length} lowercase hex digits")

    @classmethod
    def from_bytes(cls, algorithm: str, raw: bytes) -> Digest:
        return cls(algorithm=algorithm, value=raw.hex())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"


# --- the user's --checksum -----------------------------------------------------------------------


#: Bare hex values taken without an algorithm, by length.
_BARE_LENGTHS = {64: "sha256", 128: "sha512"}


def parse_checksum_spec(spec: str) -> Digest:
    """Parse ``ALG:HEX`` (e.g. ``sha256:9f86...``), ``ALG=HEX`` (as aria2c writes it) or a
    bare 64- or 128-digit hex value (sha256, sha512: what ``sha256sum`` prints); algorithm
    and hex are case-insensitive.

    Raises ``InvalidChecksum`` naming what was wrong: no algorithm, an unknown algorithm,
    non-hex characters or the wrong number of digits for the algorithm.
    """
    text = spec.strip()
    bare = _BARE_LENGTHS.get(len(text))
    if bare is not None and _HEX.fullmatch(text.lower()):
        return Digest(algorithm=bare, value=text.lower())
    cut = min((i for i in (text.find(":"), text.find("=")) if i >= 0), default=-1)
    if cut < 0:
        raise InvalidChecksum(
            f"checksum must look like ALG:HEX (or ALG=HEX, or 64 hex digits), got {spec!r}"
        )
    alg_text, hex_text = text[:cut], text[cut + 1 :]
    algorithm = _ALIASES.get(alg_text.strip().lower(), alg_text.strip().lower())
    if algorithm not in HEX_LENGTHS:
        known = ", ".join(sorted(HEX_LENGTHS))
        raise InvalidChecksum(f"unknown checksum algorithm {alg_text!r} (expected one of {known})")
    value = hex_text.strip().lower()
    if not _HEX.fullmatch(value):
        raise InvalidChecksum(f"{algorithm} checksum is not hexadecimal: {hex_text!r}")
    if len(value) != HEX_LENGTHS[algorithm]:
        raise InvalidChecksum(
            f"{algorithm} checksum must be {HEX_LENGTHS[algorithm]} hex digits, got {len(value)}"
        )
    return Digest(algorithm=algorithm, value=value)


# --- Repr-Digest / Content-Digest (RFC 9530) -----------------------------------------------------


def parse_digest_fields(value: str) -> list[Digest]:
    """The usable digests in an RFC 9530 ``Repr-Digest``/``Content-Digest`` value.

    The field is an RFC 8941 §3.2 Dictionary of ``algorithm=:base64:``. Unlike a strict
    RFC 8941 parser, which must reject the whole field on any error, this one is lenient:
    members that are malformed, use an unknown or deprecated algorithm, or carry a digest
    of the wrong length are skipped. As in RFC 8941, a repeated key keeps its last value.
    """
    found: dict[str, Digest] = {}
    for member in _split_members(value):
        digest = _parse_member(member)
        if digest is not None:
            found[digest.algorithm] = digest
    return list(found.values())


def _split_members(value: str) -> list[str]:
    """Split on top-level commas, leaving commas inside sf-strings (RFC 8941 §3.3.3) alone."""
    members: list[str] = []
    current: list[str] = []
    in_string = escaped = False
    for ch in value:
        if in_string:
            in_string = escaped or ch != '"'
            escaped = not escaped and ch == "\\"
        elif ch == '"':
            in_string = True
        elif ch == ",":
            members.append("".join(current))
            current = []
            continue
        current.append(ch)
    members.append("".join(current))
    return [m.strip() for m in members if m.strip()]


def _parse_member(member: str) -> Digest | None:
    """``key=:base64:`` with optional ``;params`` (ignored); None when unusable."""
    key, sep, rest = member.partition("=")
    algorithm = _FIELD_ALGORITHMS.get(key.strip())
    if not sep or algorithm is None:
        return None
    item = rest.split(";", 1)[0].strip()
    if len(item) < 2 or item[0] != ":" or item[-1] != ":":
        return None
    try:
        raw = base64.b64decode(item[1:-1], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) * 2 != HEX_LENGTHS[algorithm]:
        return None
    return Digest.from_bytes(algorithm, raw)


# --- checking ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mismatch:
    """An expected digest and the hex digest actually computed for the file."""

    expected: Digest
    actual: str


@dataclass(frozen=True, slots=True)
class DigestSet:
    """All digests the finished file must match (duplicates removed, order kept).

    Two sources may disagree (the user's checksum and the server's ``Repr-Digest`` for the
    same algorithm); both are kept, so at least one of them will be reported as mismatched.
    """

    digests: tuple[Digest, ...] = ()

    @classmethod
    def of(cls, *groups: Iterable[Digest]) -> DigestSet:
        merged = dict.fromkeys(d for group in groups for d in group)
        return cls(digests=tuple(merged))

    def __bool__(self) -> bool:
        return bool(self.digests)

    def algorithms(self) -> frozenset[str]:
        """The hashlib names the verifier must compute."""
        return frozenset(d.algorithm for d in self.digests)

    def mismatches(self, computed: Mapping[str, str]) -> list[Mismatch]:
        """The expected digests that ``computed`` (hashlib name → hex) does not match.

        An empty list means the file is verified. Raises ``ValueError`` when ``computed``
        lacks one of ``algorithms()``: that is the caller's bug, not a bad file.
        """
        out = []
        for expected in self.digests:
            actual = computed.get(expected.algorithm)
            if actual is None:
                raise ValueError(f"no computed {expected.algorithm} digest to check")
            if actual.lower() != expected.value:
                out.append(Mismatch(expected=expected, actual=actual.lower()))
        return out
