"""One GET from offset 0, for an origin that cannot do ranges (or will not say the size)."""

from __future__ import annotations

from pathlib import Path

from swarmget.core import events as ev
from swarmget.core.byte_sources import SourceKind
from swarmget.core.errors import DownloadError, SourceError
from swarmget.engine import verify
from swarmget.engine.checks import IntegrityChecks
from swarmget.engine.context import DownloadContext
from swarmget.engine.spec import DownloadResult, Stage
from swarmget.engine.writer import BatchWriter
from swarmget.hashing import hash_file
from swarmget.storage import PartFile, ResumeKey, open_part_file


class SingleStream:
    """The whole file in one stream from the origin, into a fresh part file."""

    def __init__(self, ctx: DownloadContext, checks: IntegrityChecks) -> None:
        self._ctx = ctx
        self._checks = checks
        self.streamed = 0  # bytes so far
        self._started: float | None = None

    def rate(self, now: float) -> float:
        started = self._started
        if started is None or now <= started:
            return 0.0
        return self.streamed / (now - started)

    async def download(self, dest: Path) -> DownloadResult:
        ctx = self._ctx
        info, spec = ctx.pinned(), ctx.spec
        ctx.stage = Stage.DOWNLOADING
        ctx.emit(ev.FellBack(at=ctx.at()))
        key = ResumeKey(url=info.url, final_url=info.final_url, size=None)
        part = await open_part_file(
            dest, key, force=spec.force, max_size=spec.max_size, expected_size=info.size
        )
        async with part:
            await self._stream_whole(part)
            ctx.stage = Stage.VERIFYING
            algorithms = verify.algorithms(spec, info, ctx.manifest)
            digests = await hash_file(part.part_path, algorithms) if algorithms else {}
            known = verify.known_digests(spec, info, ctx.manifest)
            verified = verify.check_digests(known, digests, part.part_path, None)
            path = await part.finalize(sync=spec.fsync)
        ctx.emit(ev.Verified(at=ctx.at(), path=str(path), algorithms=verified))
        return DownloadResult(
            path=path,
            size=self.streamed,
            elapsed=ctx.clock() - ctx.t0,
            mode="single-stream",
            resumed_bytes=0,
            fetched_bytes=self.streamed,
            digests=digests,
            verified=verified,
            sources=(),
            last_byte_to_done=ctx.clock() - (ctx.last_byte_at or ctx.clock()),
            verification=verify.report(spec, info, ctx.manifest, self._checks, 0),
        )

    async def _stream_whole(self, part: PartFile) -> None:
        ctx = self._ctx
        self._started = ctx.clock()
        writer = BatchWriter(part)
        first_id = min(ctx.own_sources(), default="origin")  # (the timeline's name for it)
        try:
            async with ctx.origin.open_stream(ctx.pinned()) as body:
                async for chunk in body:
                    ctx.data_from(first_id, ctx.clock())
                    if not self.streamed:
                        ctx.first_byte(first_id)
                    ctx.received(SourceKind.ORIGIN, len(chunk))
                    await writer.add(self.streamed, memoryview(chunk))
                    self.streamed += len(chunk)
            await writer.flush()
        except SourceError as exc:
            raise DownloadError(f"the single stream from the origin failed: {exc}") from exc
