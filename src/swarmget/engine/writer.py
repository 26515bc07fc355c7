"""Batched writes of a stream's claimed bytes into the part file."""

from __future__ import annotations

from swarmget.storage import PartFile

MiB = 1024 * 1024
WRITE_BATCH = 1 * MiB


class BatchWriter:
    """Collects contiguous claimed chunks into >= 1 MiB ``pwritev``s (no copying)."""

    def __init__(self, part: PartFile) -> None:
        self._part = part
        self._chunks: list[memoryview] = []
        self._start = 0
        self._length = 0

    async def add(self, offset: int, data: memoryview) -> None:
        """Take ``data`` (claimed bytes at ``offset``) before anything is awaited: a stream
        cancelled while an earlier batch is being written still has it to flush."""
        if self._chunks and offset != self._start + self._length:
            earlier, start = self._chunks, self._start
            self._chunks, self._start, self._length = [data], offset, data.nbytes
            await self._part.write_chunks_at(start, earlier)
        else:
            if not self._chunks:
                self._start = offset
            self._chunks.append(data)
            self._length += data.nbytes
        if self._length >= WRITE_BATCH:
            await self.flush()

    async def flush(self) -> None:
        if self._chunks:
            chunks, start = self._chunks, self._start
            self._chunks, self._length = [], 0
            await self._part.write_chunks_at(start, chunks)

    def discard(self) -> None:
        """Drop what was collected and not written (it came from a source found lying)."""
        self._chunks, self._length = [], 0
