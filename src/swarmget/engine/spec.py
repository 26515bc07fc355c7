"""What a download is asked to do, and the snapshots and result it gives back."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from swarmget.core.byte_sources import BytesBySource, SourceKind
from swarmget.core.digests import Digest
from swarmget.core.scheduling import SchedulerConfig, SourceInfo
from swarmget.core.verification import DEFAULT_VERIFY_SAMPLE, VerificationReport

if TYPE_CHECKING:  # (annotations only: importing them costs `swarmget get` start-up time)
    from swarmget.core.content import ContentKey
    from swarmget.engine.sharing import SharingReport


@dataclass(frozen=True, kw_only=True)
class DownloadSpec:
    """What the user asked for, validated at the edge (CLI, HTTP API)."""

    url: str
    output: Path | None = None  # a file path, or a directory to put the file in
    checksums: tuple[Digest, ...] = ()
    force: bool = False
    restart_if_changed: bool = False
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    #: record progress (survives the process being killed) this often
    checkpoint_interval: float = 1.0
    #: fdatasync the data (survives a crash of the machine) this often
    durable_interval: float = 30.0
    #: fsync the finished file before the rename (curl, wget and aria2 do not)
    fsync: bool = False
    #: refuse (before writing anything) a file larger than this many bytes; None: no limit
    max_size: int | None = None
    #: without a manifest: compare this share of every helper's bytes with the origin, a
    #: window of each stream (at least ``SAMPLE_MIN_WINDOW`` bytes; 0: trust helpers; the
    #: result then says so)
    verify_sample: float = DEFAULT_VERIFY_SAMPLE

    def __post_init__(self) -> None:
        if not 0.0 <= self.verify_sample <= 1.0:
            raise ValueError("verify_sample must be between 0 and 1")

    def sampling(self, *, manifest: bool) -> bool:
        """Are helper streams sampled against the origin (not when a manifest checks all)?"""
        return self.verify_sample > 0 and not manifest


class Stage(enum.Enum):
    PROBING = "probing"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class DownloadProgress:
    """A snapshot for progress displays."""

    stage: Stage
    url: str
    dest: Path | None
    size: int | None
    done: int
    rate: float
    elapsed: float
    mode: str  # "segmented" | "single-stream"
    resumed_bytes: int
    sources: tuple[SourceInfo, ...]
    #: bytes received so far per kind of link (origin, helpers, LAN holders, checks), live
    by_source: BytesBySource = BytesBySource()
    #: each source's kind (origin, helper, lan); not listed: the own copy (``own-copy``)
    kinds: Mapping[str, SourceKind] = field(default_factory=dict)

    @property
    def eta(self) -> float | None:
        if self.size is None or self.rate <= 0:
            return None
        return (self.size - self.done) / self.rate


@dataclass(frozen=True, kw_only=True)
class Timeline:
    """When each phase of one download happened: seconds from its start, on the engine's
    clock (None: it did not happen, or not yet). The engine records the probe, each source's
    first byte, the last byte and the verified file in place; the node adds the hub's answer
    (with how many peers it listed) and each helper joining (its health check answered).
    Typed data for the benchmark and displays, never parsed back from log text."""

    hub: float | None = None  # the hub answered (the node's downloads only)
    hub_peers: int | None = None  # how many peers it listed
    probe: float | None = None  # the origin's probe answered (the first one)
    joined: dict[str, float] = field(default_factory=dict)  # helper id -> health check answered
    first_byte: dict[str, float] = field(default_factory=dict)  # source id -> first byte in
    #: source id -> its last byte in (so far): when each source ran dry, to tell an uneven
    #: end (sources idle while the last ones finish) from slow sources
    last_data: dict[str, float] = field(default_factory=dict)
    last_byte: float | None = None  # the last byte in, from any source
    verified: float | None = None  # verified and moved into place

    def points(self) -> list[tuple[str, float]]:
        """Every point in time order, named (``first_byte:ID``, ``last_data:ID``, ``joined:ID``)."""
        named = [
            ("hub", self.hub),
            ("probe", self.probe),
            *((f"joined:{k}", v) for k, v in self.joined.items()),
            *((f"first_byte:{k}", v) for k, v in self.first_byte.items()),
            *((f"last_data:{k}", v) for k, v in self.last_data.items()),
            ("last_byte", self.last_byte),
            ("verified", self.verified),
        ]
        return sorted(((n, t) for n, t in named if t is not None), key=lambda p: p[1])


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    elapsed: float
    mode: str
    resumed_bytes: int
    fetched_bytes: int  # bytes received from all sources in this run (incl. duplicates)
    digests: dict[str, str]  # what we computed (and checked, where a digest was known)
    verified: tuple[str, ...]  # which known digests matched
    sources: tuple[SourceInfo, ...]
    last_byte_to_done: float  # seconds from the last byte received to the file in place
    #: how the bytes were checked (digests, manifest, sampled helper streams, or nothing)
    verification: VerificationReport = field(default_factory=VerificationReport)
    #: when each phase happened (``Timeline``)
    timeline: Timeline = field(default_factory=Timeline)
    #: fetch once per LAN (#15): what the group fetch did (None: sharing was not asked for)
    sharing: SharingReport | None = None
    #: the content key of what the probe pinned (``core.content``; not in the JSON): what
    #: ``get --share-output`` hands the node with the file (None: not known here)
    content: ContentKey | None = None
