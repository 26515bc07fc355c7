"""What a finished download's bytes were checked against: a fact, carried as values.

``Verification`` names one way the bytes were checked; a ``VerificationReport`` lists every
way that applied to a download (strongest first) with the numbers behind a spot check.

* ``CHECKSUM`` — the whole file matched the user's ``--checksum``.
* ``MANIFEST`` — every piece matched the relay's manifest as it landed (and the whole file
  its sha256).
* ``REPR_DIGEST`` — the whole file matched the origin's RFC 9530 ``Repr-Digest``.
* ``SAMPLED`` — every stream a helper delivered was compared with the origin's bytes on a
  window at a random offset drawn after the stream's bytes were on disk (see
  ``engine/``): a helper corrupting every stream is caught for sure, one corrupting
  a few bytes of one stream only with the odds of the window hitting them.
* ``NONE`` — nothing beyond the size (bytes straight from the origin, or sampling switched off).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

TYPE_CHECKING = False  # (typing is ~4 ms of a plain `get`'s start: issue #14)
if TYPE_CHECKING:
    from typing import Any


class Verification(enum.Enum):
    CHECKSUM = "checksum"
    MANIFEST = "manifest"
    REPR_DIGEST = "repr_digest"
    SAMPLED = "sampled"
    NONE = "none"


#: whole-file checks first: any of them proves every byte, a sample does not
#: The share of each helper stream compared with the origin by default (``swarmget.engine``).
DEFAULT_VERIFY_SAMPLE = 0.01

STRENGTH = (
    Verification.CHECKSUM,
    Verification.MANIFEST,
    Verification.REPR_DIGEST,
    Verification.SAMPLED,
    Verification.NONE,
)


_WHOLE_FILE = frozenset({Verification.CHECKSUM, Verification.MANIFEST, Verification.REPR_DIGEST})


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationReport:
    """How a download's bytes were checked."""

    methods: tuple[Verification, ...] = ()  # strongest first; empty: ``NONE``
    helper_bytes: int = 0  # bytes of the file delivered by helpers (not our own connections)
    helper_streams: int = 0  # helper streams that delivered any of them
    sampled_streams: int = 0  # ... of which compared with the origin
    sampled_bytes: int = 0  # bytes re-fetched from the origin for those comparisons
    sample_fraction: float = 0.0  # the configured share of each stream to compare

    def __post_init__(self) -> None:
        if len(set(self.methods)) != len(self.methods) or Verification.NONE in self.methods:
            raise ValueError("methods: distinct, and NONE is spelled as no method")
        ordered = tuple(sorted(self.methods, key=STRENGTH.index))
        object.__setattr__(self, "methods", ordered)

    @property
    def level(self) -> Verification:
        """The strongest check that applied."""
        return self.methods[0] if self.methods else Verification.NONE

    @property
    def whole_file(self) -> bool:
        """True when every byte was checked against a digest (not only sampled)."""
        return self.level in _WHOLE_FILE

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "methods": [m.value for m in self.methods],
            "whole_file": self.whole_file,
            "helper_bytes": self.helper_bytes,
            "helper_streams": self.helper_streams,
            "sampled_streams": self.sampled_streams,
            "sampled_bytes": self.sampled_bytes,
            "sample_fraction": self.sample_fraction,
        }

    @classmethod
    def from_json(cls, data: Any) -> VerificationReport:
        """The inverse of ``to_json`` (ValueError/TypeError/KeyError on a malformed one)."""
        if not isinstance(data, dict):
            raise TypeError("a verification report is a JSON object")
        return cls(
            methods=tuple(Verification(m) for m in data["methods"]),
            helper_bytes=int(data["helper_bytes"]),
            helper_streams=int(data["helper_streams"]),
            sampled_streams=int(data["sampled_streams"]),
            sampled_bytes=int(data["sampled_bytes"]),
            sample_fraction=float(data["sample_fraction"]),
        )
