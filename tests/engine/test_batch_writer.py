"""The batch writer never loses claimed bytes, even when its stream is cancelled mid-write.

Found by the LAN benchmark (a 16 MiB download failed its sha256 with a 13,332-byte hole the
scheduler counted as delivered): a stream whose next claimed chunk did not follow the batch
(another copy had delivered the bytes between) flushed the batch first and was cancelled
during that write ("another copy finished first"), before the new chunk was taken, so the
flush on cancellation had nothing left to write.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from swarmget.core.ranges import ByteRange
from swarmget.engine.writer import WRITE_BATCH, BatchWriter
from swarmget.storage import ResumeKey, open_part_file

SIZE = 4 * WRITE_BATCH


def _key() -> ResumeKey:
    return ResumeKey(url="http://o/f", final_url="http://o/f", size=SIZE, validator_etag='"v1"')


async def test_a_chunk_after_a_gap_is_kept_when_the_stream_is_cancelled_mid_flush(
    tmp_path: Path,
) -> None:
    async with await open_part_file(tmp_path / "f", _key(), force=False) as part:
        writer = BatchWriter(part)
        first = memoryview(b"a" * 1000)
        after_gap = memoryview(b"b" * 500)
        await writer.add(0, first)
        adding = asyncio.create_task(writer.add(5000, after_gap))  # flushes [0, 1000) first
        await asyncio.sleep(0)  # now waiting for that write
        assert not adding.done()
        adding.cancel()
        try:
            await adding
        except asyncio.CancelledError:
            pass
        await writer.flush()  # what a cancelled stream does with what it claimed
    # closed: every write has finished (the one the cancelled task waited for too)
    assert list(part.written) == [ByteRange(0, 1000), ByteRange(5000, 5500)]
    data = (tmp_path / "f.part").read_bytes()
    assert data[:1000] == b"a" * 1000
    assert data[5000:5500] == b"b" * 500


async def test_contiguous_chunks_go_out_in_batches_of_at_least_the_batch_size(
    tmp_path: Path,
) -> None:
    async with await open_part_file(tmp_path / "f", _key(), force=False) as part:
        writer = BatchWriter(part)
        piece = 256 * 1024
        for i in range(3):  # 768 KiB: under a batch, nothing written yet
            await writer.add(i * piece, memoryview(bytes([i]) * piece))
        assert list(part.written) == []
        await writer.add(3 * piece, memoryview(b"\x03" * piece))  # 1 MiB: one write
        assert list(part.written) == [ByteRange(0, WRITE_BATCH)]
        await writer.add(WRITE_BATCH + 10, memoryview(b"x" * 10))  # a gap: kept, not written
        assert list(part.written) == [ByteRange(0, WRITE_BATCH)]
        writer.discard()
        await writer.flush()
        assert list(part.written) == [ByteRange(0, WRITE_BATCH)]
