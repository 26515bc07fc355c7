"""The final verification: every known digest of the whole file, the file moved into place,
and the report of how the bytes were checked."""

from __future__ import annotations

from pathlib import Path

from swarmget.core import events as ev
from swarmget.core.digests import Digest, DigestSet
from swarmget.core.errors import ChecksumMismatch
from swarmget.core.manifest import Manifest
from swarmget.core.scheduler import Scheduler, SourceInfo
from swarmget.core.verification import Verification, VerificationReport
from swarmget.engine.checks import IntegrityChecks
from swarmget.engine.context import DownloadContext
from swarmget.engine.spec import DownloadResult, DownloadSpec
from swarmget.hashing import IncrementalHasher
from swarmget.net.origin import OriginInfo
from swarmget.storage import PartFile


def known_digests(spec: DownloadSpec, info: OriginInfo, manifest: Manifest | None) -> DigestSet:
    """The user's checksums, the origin's ``Repr-Digest`` and the relay manifest's digest."""
    whole = () if manifest is None else (Digest("sha256", manifest.sha256),)
    return DigestSet.of(spec.checksums, info.digests, whole)


def algorithms(spec: DownloadSpec, info: OriginInfo, manifest: Manifest | None) -> set[str]:
    """What to hash the file with (nothing known: nothing)."""
    return set(known_digests(spec, info, manifest).algorithms())


async def proven_early(ctx: DownloadContext, hasher: IncrementalHasher) -> bool:
    """Every byte is on disk and only sample checks of helper streams are still out: is the
    file proven right already? Yes when a whole-file digest is known (``--checksum``,
    ``Repr-Digest``, a relay's manifest) and matches: the samples can teach nothing more
    (they round-trip to the origin; the run need not wait for them). No digest, or one that
    does not match (yet): the samples go on, may catch a liar whose bytes are then fetched
    again, and the digest is compared once more at the end, as always."""
    info = ctx.pinned()
    known = known_digests(ctx.spec, info, ctx.manifest)
    if not known or info.size is None:
        return False
    return not known.mismatches(await hasher.finish(info.size))


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
    # nothing claimed in this run: every byte was on disk already (resumed)
    return "; ".join(parts) or "earlier runs (every byte was resumed from the partial file)"


async def finish_segmented(
    ctx: DownloadContext,
    checks: IntegrityChecks,
    scheduler: Scheduler,
    part: PartFile,
    digests: dict[str, str],
    *,
    resumed: int,
) -> DownloadResult:
    """Check the digests of a segmented run's file, move it into place, and say how it went."""
    info = ctx.pinned()
    known = known_digests(ctx.spec, info, ctx.manifest)
    sources = scheduler.statistics(ctx.clock()).sources
    verified = check_digests(known, digests, part.part_path, sources)
    path = await part.finalize(sync=ctx.spec.fsync)
    ctx.emit(ev.Verified(at=ctx.at(), path=str(path), algorithms=verified))
    sources = scheduler.statistics(ctx.clock()).sources
    own = ctx.own_sources()
    helper_bytes = sum(s.claimed for s in sources if s.source_id not in own)
    assert info.size is not None
    return DownloadResult(
        path=path,
        size=info.size,
        elapsed=ctx.clock() - ctx.t0,
        mode="segmented",
        resumed_bytes=resumed,
        fetched_bytes=sum(s.received for s in sources),
        digests=digests,
        verified=verified,
        sources=sources,
        last_byte_to_done=ctx.clock() - (ctx.last_byte_at or ctx.clock()),
        verification=report(ctx.spec, info, ctx.manifest, checks, helper_bytes),
    )


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
