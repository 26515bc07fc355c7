"""Who is blamed for bytes that failed a check, and what becomes of the bytes.

Theory of operation. Two checks find bad bytes in a segmented download; the engine states
what it found as a fact and carries out the ``Verdict`` that ``judge`` returns (it decides
nothing itself):

- ``PieceFailed``: a piece of the relay's manifest hashed wrong. Its bytes are fetched
  again. Blame goes to who delivered them in this run: a sole contributor is banned (pieces
  are aligned to the manifest's, so most come from one source, and that one sent the bad
  bytes); several contributors each get a strike (one of them lied and we cannot tell which;
  the scheduler bans a source whose strikes pile up). No contributor at all means the bytes
  were already on disk from an earlier run: nobody is blamed, they are fetched again.
- ``SampleDiffered``: a window of a helper's stream differs from the origin's bytes. The
  origin is the reference, so the helper lied: it is banned and distrusted (whatever it
  claimed and has not written yet is dropped; its streams are not sampled any more),
  everything it delivered is fetched again, and the whole-file hash is computed again at the
  end (its bytes may have entered the running hash). A helper caught already (distrusted)
  gets nothing more: its bytes were sent back when it was caught.

Pure: no I/O, no clock. The engine builds the facts from the scheduler's bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from swarmget.core.ranges import ByteRange


@dataclass(frozen=True, kw_only=True)
class PieceFailed:
    """Piece ``piece`` of the manifest (``range`` of the file) did not match its digest."""

    piece: int
    range: ByteRange
    contributors: Mapping[str, int]  # who delivered bytes of it in this run, and how many


@dataclass(frozen=True, kw_only=True)
class SampleDiffered:
    """The ``window`` of a stream of ``source_id`` differs from the origin's bytes."""

    source_id: str
    window: ByteRange
    delivered: tuple[ByteRange, ...]  # every range the source delivered in this run
    distrusted: bool = False  # it was caught lying before


BadBytes = PieceFailed | SampleDiffered


def _nobody() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What to do about bad bytes (empty: nothing)."""

    #: who is named as having sent them, with how many bytes each (for the report)
    blamed: Mapping[str, int] = field(default_factory=_nobody)
    ban: tuple[str, ...] = ()  # never use again in this download
    strike: tuple[str, ...] = ()  # a bad answer counted against each
    distrust: tuple[str, ...] = ()  # drop what they claimed and did not write; stop sampling
    refetch: tuple[ByteRange, ...] = ()  # no longer done: fetch again
    rehash: bool = False  # hash the whole file again at the end

    @property
    def nothing(self) -> bool:
        return not (self.refetch or self.ban or self.strike or self.distrust)


def judge(fact: BadBytes) -> Verdict:
    """The verdict on ``fact`` (see the module docstring)."""
    if isinstance(fact, PieceFailed):
        return _judge_piece(fact)
    return _judge_sample(fact)


def _judge_piece(fact: PieceFailed) -> Verdict:
    blamed = MappingProxyType(dict(fact.contributors))
    if len(blamed) == 1:
        return Verdict(blamed=blamed, ban=tuple(blamed), refetch=(fact.range,))
    return Verdict(blamed=blamed, strike=tuple(blamed), refetch=(fact.range,))


def _judge_sample(fact: SampleDiffered) -> Verdict:
    if fact.distrusted:
        return Verdict()
    liar = (fact.source_id,)
    delivered = sum(len(r) for r in fact.delivered)
    return Verdict(
        blamed=MappingProxyType({fact.source_id: delivered}),
        ban=liar,
        distrust=liar,
        refetch=fact.delivered,
        rehash=True,
    )
