"""The final verification: every known digest of the whole file, and the report of how the
bytes were checked."""

from __future__ import annotations

from pathlib import Path

from swarmget.core.digests import Digest, DigestSet
from swarmget.core.errors import ChecksumMismatch
from swarmget.core.manifest import Manifest
from swarmget.core.scheduler import SourceInfo
from swarmget.core.verification import Verification, VerificationReport
from swarmget.engine.checks import IntegrityChecks
from swarmget.engine.spec import DownloadSpec
from swarmget.net.origin import OriginInfo


def known_digests(spec: DownloadSpec, info: OriginInfo, manifest: Manifest | None) -> DigestSet:
    """The user's checksums, the origin's ``Repr-Digest`` and the relay manifest's digest."""
    whole = () if manifest is None else (Digest("sha256", manifest.sha256),)
    return DigestSet.of(spec.checksums, info.digests, whole)


def algorithms(spec: DownloadSpec, info: OriginInfo, manifest: Manifest | None) -> set[str]:
    """What to hash the file with (nothing known: nothing)."""
    return set(known_digests(spec, info, manifest).algorithms())


def check_digests(
    known: DigestSet,
    computed: dict[str, str],
    kept: Path,
    delivered: tuple[SourceInfo, ...] | None,
) -> tuple[str, ...]:
    """The algorithms checked; ChecksumMismatch (naming who delivered what, ``delivered``
    None for one stream from the origin) if any known digest differs."""
    mismatches = known.mismatches(computed)
    if mismatches:
        lines = "; ".join(
            f"{m.expected.algorithm}: expected {m.expected.value}, got {m.actual}"
            for m in mismatches
        )
        raise ChecksumMismatch(
            f"checksum mismatch ({lines}); nothing was deleted: the data is kept in "
            f"{kept}. Delivered by: {who_delivered(delivered)}"
        )
    return tuple(sorted(computed))


def who_delivered(sources: tuple[SourceInfo, ...] | None) -> str:
    if sources is None:
        return "one stream from the origin"
    parts = []
    for s in sources:
        if s.claimed:
            shown = ", ".join(f"{r.start}-{r.end}" for r in s.segments[:4])
            more = f" and {len(s.segments) - 4} more ranges" if len(s.segments) > 4 else ""
            parts.append(f"{s.source_id}: {s.claimed} bytes ({shown}{more})")
    return "; ".join(parts) or "nobody"


def report(
    spec: DownloadSpec,
    info: OriginInfo,
    manifest: Manifest | None,
    checks: IntegrityChecks,
    helper_bytes: int,
) -> VerificationReport:
    """How the bytes were checked (called once every known digest matched)."""
    methods = []
    if spec.checksums:
        methods.append(Verification.CHECKSUM)
    if manifest is not None:
        methods.append(Verification.MANIFEST)
    if info.digests:
        methods.append(Verification.REPR_DIGEST)
    if checks.sampled_streams:
        methods.append(Verification.SAMPLED)
    sampling = spec.sampling(manifest=manifest is not None)
    return VerificationReport(
        methods=tuple(methods),
        helper_bytes=helper_bytes,
        helper_streams=checks.helper_streams,
        sampled_streams=checks.sampled_streams,
        sampled_bytes=checks.sampled_bytes,
        sample_fraction=spec.verify_sample if sampling else 0.0,
    )
