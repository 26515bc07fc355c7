"""Tests for swarmget.hashing: whole-file digests and the incremental prefix hasher."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest

from swarmget.core.errors import StorageError
from swarmget.hashing import HASH_BLOCK, IncrementalHasher, hash_file
from swarmget.storage import ResumeKey, open_part_file

ALGORITHMS = ("sha256", "md5", "sha1", "blake2b")


def reference(data: bytes) -> dict[str, str]:
    return {name: hashlib.new(name, data).hexdigest() for name in ALGORITHMS}


@pytest.fixture
def data() -> bytes:
    # Spans several HASH_BLOCKs and ends in a partial one.
    return random.Random(99).randbytes(2 * HASH_BLOCK + 12345)


@pytest.fixture
def path(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "blob"
    p.write_bytes(data)
    return p


async def test_hash_file_matches_hashlib(path: Path, data: bytes) -> None:
    assert await hash_file(path, ALGORITHMS) == reference(data)


async def test_hash_file_sub_range(path: Path, data: bytes) -> None:
    start, end = 1000, HASH_BLOCK + 5000
    assert await hash_file(path, ALGORITHMS, start=start, end=end) == reference(data[start:end])


async def test_hash_empty_range(path: Path) -> None:
    assert await hash_file(path, ["sha256"], start=7, end=7) == {
        "sha256": hashlib.sha256().hexdigest()
    }


async def test_hash_file_rejects_bad_input(path: Path, data: bytes) -> None:
    with pytest.raises(ValueError, match="unknown hash algorithm 'nope'"):
        await hash_file(path, ["sha256", "nope"])
    with pytest.raises(ValueError, match="variable-length"):
        await hash_file(path, ["shake_128"])
    with pytest.raises(ValueError, match="no hash algorithm"):
        await hash_file(path, [])
    with pytest.raises(ValueError, match="invalid range"):
        await hash_file(path, ["sha256"], start=10, end=5)
    with pytest.raises(StorageError, match="expected at least"):
        await hash_file(path, ["sha256"], end=len(data) + 1)
    with pytest.raises(StorageError, match="cannot open"):
        await hash_file(path.with_name("missing"), ["sha256"])


async def test_incremental_with_uneven_advances(path: Path, data: bytes) -> None:
    rng = random.Random(7)
    async with IncrementalHasher(path, ALGORITHMS, batch=64 * 1024) as hasher:
        upto = 0
        while upto < len(data):
            upto = min(len(data), upto + rng.choice([1, 100, 5000, 70_000, 3_000_000]))
            hashed = await hasher.advance(upto)
            # Below the batch size nothing is read; at or above it, everything pending is.
            assert hashed == upto or upto - hashed < 64 * 1024
            assert hasher.hexdigests() == reference(data[:hashed])
        assert await hasher.finish(len(data)) == reference(data)


async def test_incremental_never_goes_backwards(path: Path, data: bytes) -> None:
    async with IncrementalHasher(path, ["sha256"], batch=1) as hasher:
        assert await hasher.advance(5000) == 5000
        assert await hasher.advance(10) == 5000
        assert await hasher.finish(5000) == {"sha256": hashlib.sha256(data[:5000]).hexdigest()}


async def test_incremental_cancelled_advance_stays_consistent(path: Path, data: bytes) -> None:
    async with IncrementalHasher(path, ["sha256"], batch=1) as hasher:
        task = asyncio.create_task(hasher.advance(len(data)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await hasher.finish(len(data)) == {"sha256": hashlib.sha256(data).hexdigest()}


async def test_incremental_follows_a_part_file_and_survives_the_rename(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(3 * 1024 * 1024 + 1)
    piece = 256 * 1024
    offsets = list(range(0, len(data), piece))
    random.Random(4).shuffle(offsets)
    key = ResumeKey(url="http://o/f", final_url="http://o/f", size=len(data))
    part = await open_part_file(tmp_path / "f", key, force=False)
    async with part, IncrementalHasher(part.part_path, ["sha256"]) as hasher:
        for offset in offsets:
            await part.write_at(offset, data[offset : offset + piece])
            await hasher.advance(part.written_prefix())
        assert len(data) - hasher.hashed < 1024 * 1024  # only the tail is left
        final = await part.finalize()
        digests = await hasher.finish(len(data))  # its own fd still reads the renamed file
    assert digests == {"sha256": hashlib.sha256(data).hexdigest()}
    assert final == tmp_path / "f"


async def test_incremental_closed_hasher_refuses_work(path: Path) -> None:
    hasher = IncrementalHasher(path, ["sha256"], batch=1)
    await hasher.advance(10)
    await hasher.aclose()
    await hasher.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await hasher.advance(20)
