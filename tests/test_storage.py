"""Tests for swarmget.storage: in-place writes, checkpoints, resume, finalize, full disks."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmget.core.errors import (
    DestinationExists,
    InsufficientStorage,
    OriginChanged,
    StorageError,
)
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.storage import (
    PartFile,
    ResumeKey,
    ResumeState,
    control_path_for,
    open_part_file,
    part_path_for,
)

KiB = 1024
MiB = 1024 * KiB


def make_key(size: int | None, *, etag: str | None = '"v1"', url: str = "http://o/f") -> ResumeKey:
    return ResumeKey(url=url, final_url=url, size=size, validator_etag=etag)


def stored_written(dest: Path) -> RangeSet:
    """The ranges the control file on disk claims."""
    return RangeSet.from_pairs(json.loads(read(control_path_for(dest)))["written"])


# Plain functions, so that async tests may touch the file system without ASYNC240 noise.
def read(path: Path) -> bytes:
    return path.read_bytes()


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def exists(path: Path) -> bool:
    return path.exists()


def file_size(path: Path) -> int:
    return path.stat().st_size


def listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "out.bin"


@pytest.fixture
def payload() -> bytes:
    return random.Random(1234).randbytes(3 * MiB + 17)


# --- writing and finalizing --------------------------------------------------------------------


async def test_out_of_order_writes_produce_the_file(dest: Path, payload: bytes) -> None:
    pieces = [
        ByteRange(i, min(i + 256 * KiB, len(payload))) for i in range(0, len(payload), 256 * KiB)
    ]
    random.Random(5).shuffle(pieces)
    part = await open_part_file(dest, make_key(len(payload)), force=False)
    async with part:
        assert part.resume_state is ResumeState.NEW
        assert file_size(part.part_path) == len(payload)  # preallocated
        async with asyncio.TaskGroup() as tg:
            for r in pieces:
                tg.create_task(part.write_at(r.start, memoryview(payload)[r.start : r.end]))
        assert part.is_complete()
        assert not exists(dest)  # nothing at DEST until finalize
        assert await part.finalize() == dest
    assert read(dest) == payload
    assert not exists(part_path_for(dest))
    assert not exists(control_path_for(dest))


async def test_written_prefix_tracks_the_contiguous_start(dest: Path) -> None:
    async with await open_part_file(dest, make_key(100), force=False) as part:
        await part.write_at(10, b"x" * 10)
        assert part.written_prefix() == 0
        await part.write_at(0, b"y" * 10)
        assert part.written_prefix() == 20
        await part.write_at(30, b"z" * 5)
        assert part.written_prefix() == 20
        assert part.written == RangeSet([ByteRange(0, 20), ByteRange(30, 35)])


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_write_whose_caller_is_cancelled_still_counts(dest: Path, chunked: bool) -> None:
    """The thread finishes the write anyway: ``written`` must say so, or the prefix (and the
    hash that follows it) would wait forever behind bytes that are on disk."""
    size = 8 * MiB
    data = random.Random(7).randbytes(size)
    async with await open_part_file(dest, make_key(size), force=False) as part:
        if chunked:
            halves = [data[: size // 2], data[size // 2 :]]
            task = asyncio.create_task(part.write_chunks_at(0, halves))
        else:
            task = asyncio.create_task(part.write_at(0, data))
        await asyncio.sleep(0)  # the task hands the write to a thread and waits for it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await part.settle()
        assert part.written == RangeSet([ByteRange(0, size)])
        assert part.written_prefix() == size
        await part.finalize(sync=False)
    assert read(dest) == data


async def test_finalize_waits_for_a_cancelled_callers_write(dest: Path) -> None:
    data = random.Random(8).randbytes(4 * MiB)
    async with await open_part_file(dest, make_key(len(data)), force=False) as part:
        task = asyncio.create_task(part.write_at(0, data))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await part.finalize(sync=False)  # no settle(): finalize drains first
    assert read(dest) == data


async def test_small_and_empty_writes(dest: Path) -> None:
    async with await open_part_file(dest, make_key(5), force=False) as part:
        await part.write_at(3, b"")
        assert not part.written
        for i, c in enumerate(b"hello"):
            await part.write_at(i, bytes([c]))
        await part.finalize()
    assert read(dest) == b"hello"


async def test_write_outside_the_file_is_refused(dest: Path) -> None:
    async with await open_part_file(dest, make_key(10), force=False) as part:
        with pytest.raises(ValueError, match="beyond the end"):
            await part.write_at(8, b"abc")
        with pytest.raises(ValueError, match="invalid byte range"):
            await part.write_at(-1, b"a")


async def test_finalize_refuses_an_incomplete_file(dest: Path) -> None:
    async with await open_part_file(dest, make_key(10), force=False) as part:
        await part.write_at(0, b"12345")
        with pytest.raises(ValueError, match="5 bytes not written"):
            await part.finalize()
    assert not exists(dest)


async def test_zero_byte_file(dest: Path) -> None:
    async with await open_part_file(dest, make_key(0), force=False) as part:
        assert part.is_complete()
        await part.finalize()
    assert read(dest) == b""


async def test_closed_part_file_refuses_writes(dest: Path) -> None:
    part = await open_part_file(dest, make_key(10), force=False)
    await part.close()
    await part.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await part.write_at(0, b"a")


# --- the destination ---------------------------------------------------------------------------


async def test_existing_destination_needs_force(dest: Path) -> None:
    write(dest, b"old")
    with pytest.raises(DestinationExists, match="already exists"):
        await open_part_file(dest, make_key(3), force=False)
    assert not exists(part_path_for(dest))
    async with await open_part_file(dest, make_key(3), force=True) as part:
        await part.write_at(0, b"new")
        await part.finalize()
    assert read(dest) == b"new"


async def test_directory_destination_is_refused_even_with_force(dest: Path) -> None:
    os.mkdir(dest)
    with pytest.raises(DestinationExists, match="is a directory"):
        await open_part_file(dest, make_key(3), force=True)


async def test_destination_appearing_meanwhile_is_not_clobbered(dest: Path) -> None:
    part = await open_part_file(dest, make_key(3), force=False)
    await part.write_at(0, b"new")
    write(dest, b"someone else's")
    with pytest.raises(DestinationExists):
        await part.finalize()
    assert read(dest) == b"someone else's"
    assert read(part_path_for(dest)) == b"new"
    assert stored_written(dest) == RangeSet([ByteRange(0, 3)])  # a re-run resumes complete


async def test_destination_appearing_meanwhile_is_replaced_with_force(dest: Path) -> None:
    part = await open_part_file(dest, make_key(3), force=True)
    await part.write_at(0, b"new")
    write(dest, b"someone else's")
    await part.finalize()
    assert read(dest) == b"new"


async def test_second_writer_is_locked_out(dest: Path) -> None:
    async with await open_part_file(dest, make_key(10), force=False):
        with pytest.raises(StorageError, match="another swarmget process"):
            await open_part_file(dest, make_key(10), force=False)


async def test_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="while opening"):
        await open_part_file(tmp_path / "nope" / "f", make_key(10), force=False)


# --- checkpoints and resume --------------------------------------------------------------------


async def test_checkpoint_then_reopen_resumes(dest: Path) -> None:
    part = await open_part_file(dest, make_key(100), force=False)
    await part.write_at(10, b"a" * 20)
    await part.write_at(60, b"b" * 40)
    await part.checkpoint()
    await part.close()
    assert exists(part_path_for(dest))

    async with await open_part_file(dest, make_key(100), force=False) as again:
        assert again.resume_state is ResumeState.RESUMED
        assert again.written == RangeSet([ByteRange(10, 30), ByteRange(60, 100)])
        await again.write_at(0, b"c" * 10)
        await again.write_at(30, b"d" * 30)
        await again.finalize()
    assert read(dest) == b"c" * 10 + b"a" * 20 + b"d" * 30 + b"b" * 40


async def test_close_saves_progress(dest: Path) -> None:
    async with await open_part_file(dest, make_key(10), force=False) as part:
        await part.write_at(0, b"abc")
    assert stored_written(dest) == RangeSet([ByteRange(0, 3)])


async def test_unchanged_checkpoint_does_not_rewrite_the_control_file(dest: Path) -> None:
    async with await open_part_file(dest, make_key(10), force=False) as part:
        await part.write_at(0, b"abc")
        await part.checkpoint()
        before = os.stat(control_path_for(dest)).st_ino
        await part.checkpoint()
        assert os.stat(control_path_for(dest)).st_ino == before


@pytest.mark.parametrize(
    "changed",
    [
        make_key(100, etag='"v2"'),
        make_key(101),
        make_key(100, url="http://o/other"),
    ],
    ids=["validator", "size", "url"],
)
async def test_changed_key_restarts(dest: Path, changed: ResumeKey) -> None:
    async with await open_part_file(dest, make_key(100), force=False) as part:
        await part.write_at(0, b"a" * 50)
    another_url = changed.url != "http://o/f"  # its data is dropped only with --force
    async with await open_part_file(dest, changed, force=another_url) as part:
        assert part.resume_state is ResumeState.RESTARTED_CHANGED
        assert not part.written
        assert read(part.part_path) == bytes(changed.size or 0)  # old data dropped
    assert stored_written(dest) == RangeSet()


async def test_final_url_change_still_resumes(dest: Path) -> None:
    async with await open_part_file(dest, make_key(10), force=False) as part:
        await part.write_at(0, b"a")
    moved = ResumeKey(url="http://o/f", final_url="http://mirror/f", size=10, validator_etag='"v1"')
    async with await open_part_file(dest, moved, force=False) as part:
        assert part.resume_state is ResumeState.RESUMED


async def test_damaged_part_file_restarts(dest: Path) -> None:
    async with await open_part_file(dest, make_key(100), force=False) as part:
        await part.write_at(0, b"a" * 50)
    os.truncate(part_path_for(dest), 40)
    async with await open_part_file(dest, make_key(100), force=False) as part:
        assert part.resume_state is ResumeState.RESTARTED_UNUSABLE
        assert not part.written


async def test_corrupt_control_file_restarts(dest: Path) -> None:
    async with await open_part_file(dest, make_key(100), force=False) as part:
        await part.write_at(0, b"a" * 50)
    write(control_path_for(dest), b'{"format": "swarmget-part", "version": 1, "key": {')
    async with await open_part_file(dest, make_key(100), force=False) as part:
        assert part.resume_state is ResumeState.RESTARTED_UNUSABLE
        assert not part.written


async def test_discard_removes_both_files(dest: Path) -> None:
    part = await open_part_file(dest, make_key(10), force=False)
    await part.write_at(0, b"a")
    await part.checkpoint()
    await part.discard()
    assert not exists(part_path_for(dest))
    assert not exists(control_path_for(dest))
    assert not exists(dest)


_KILLED_WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from swarmget.storage import ResumeKey, open_part_file

    async def main() -> None:
        key = ResumeKey(url="http://o/f", final_url="http://o/f", size=1000, validator_etag='"v1"')
        part = await open_part_file(Path(sys.argv[1]), key, force=False)
        await part.write_at(0, b"a" * 100)
        await part.checkpoint()
        await part.write_at(500, b"b" * 100)  # written, never checkpointed
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


def test_control_file_never_claims_unsynced_writes(dest: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(dest)], check=False)
    assert proc.returncode == -signal.SIGKILL

    async def reopen() -> RangeSet:
        async with await open_part_file(dest, make_key(1000), force=False) as part:
            assert part.resume_state is ResumeState.RESUMED
            return part.written

    assert asyncio.run(reopen()) == RangeSet([ByteRange(0, 100)])


# --- unknown size ------------------------------------------------------------------------------


async def test_unknown_size_appends_and_never_resumes(dest: Path) -> None:
    part = await open_part_file(dest, make_key(None, etag=None), force=False)
    await part.write_at(0, b"hello ")
    with pytest.raises(ValueError, match="expected an append at 6"):
        await part.write_at(0, b"again")
    await part.write_at(6, b"world")
    assert part.size is None
    await part.checkpoint()  # a no-op
    await part.close()
    assert not exists(control_path_for(dest))

    async with await open_part_file(dest, make_key(None, etag=None), force=False) as part:
        assert part.resume_state is ResumeState.NEW
        assert file_size(part.part_path) == 0  # started over
        await part.write_at(0, b"chunked")
        await part.finalize()
        assert part.size == 7
    assert read(dest) == b"chunked"


async def test_unknown_size_drops_an_old_control_file(dest: Path) -> None:
    async with await open_part_file(dest, make_key(10), force=False) as part:
        await part.write_at(0, b"a")
    async with await open_part_file(dest, make_key(None), force=False) as part:
        assert part.resume_state is ResumeState.RESTARTED_CHANGED
    assert not exists(control_path_for(dest))


# --- property: any order of any pieces ---------------------------------------------------------

pieces_strategy = st.integers(min_value=1, max_value=4096).flatmap(
    lambda size: st.tuples(
        st.just(size),
        st.lists(
            st.tuples(st.integers(0, size - 1), st.integers(1, size)).map(
                lambda t: ByteRange(t[0], min(size, t[0] + t[1]))
            ),
            max_size=20,
        ),
        st.integers(1, 4),
    )
)


@settings(max_examples=60, deadline=None)
@given(case=pieces_strategy, seed=st.integers(0, 2**32 - 1))
def test_any_write_order_yields_the_expected_content(
    case: tuple[int, list[ByteRange], int], seed: int
) -> None:
    size, pieces, parallel = case
    reference = random.Random(seed).randbytes(size)
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "f"
        written = asyncio.run(_write_pieces(dest, size, reference, pieces, parallel))
        union = RangeSet(pieces)
        assert written == union
        data = read(part_path_for(dest))
        expected = bytearray(size)
        for r in union:
            expected[r.start : r.end] = reference[r.start : r.end]
        assert data == expected


async def _write_pieces(
    dest: Path, size: int, reference: bytes, pieces: list[ByteRange], parallel: int
) -> RangeSet:
    async with await open_part_file(dest, make_key(size), force=False) as part:
        for i in range(0, len(pieces), parallel):
            batch = pieces[i : i + parallel]
            await asyncio.gather(
                *(part.write_at(r.start, reference[r.start : r.end]) for r in batch)
            )
            if i % 3 == 0:
                await part.checkpoint()
    async with await open_part_file(dest, make_key(size), force=False) as again:
        assert again.resume_state is (ResumeState.RESUMED if pieces else ResumeState.NEW)
        return again.written


# --- full disks (a tiny tmpfs; needs root) -----------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, mounted for the test and unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill_up(directory: Path) -> None:
    """Write a filler file until the file system is full."""
    with open(directory / "filler", "wb", buffering=0) as f:
        while True:
            try:
                f.write(bytes(16 * KiB))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return


async def test_preallocation_beyond_free_space_fails_clearly(tiny_fs: Path) -> None:
    dest = tiny_fs / "big.iso"
    with pytest.raises(
        InsufficientStorage, match=r"not enough disk space .*need 4194304 bytes"
    ) as info:
        await open_part_file(dest, make_key(4 * MiB), force=False)
    assert str(part_path_for(dest)) in str(info.value)
    assert listing(tiny_fs) == set()  # refused before anything was created


async def test_disk_full_while_writing_keeps_the_partial_download(tiny_fs: Path) -> None:
    dest = tiny_fs / "f.bin"
    part = await open_part_file(dest, make_key(512 * KiB), force=False, preallocate=False)
    await part.write_at(0, b"a" * 4 * KiB)
    await part.checkpoint()
    fill_up(tiny_fs)
    with pytest.raises(StorageError, match="disk full while writing .*kept for resuming"):
        await part.write_at(64 * KiB, b"b" * 256 * KiB)
    assert part.written == RangeSet([ByteRange(0, 4 * KiB)])
    await part.close()
    assert stored_written(dest) == RangeSet([ByteRange(0, 4 * KiB)])

    os.unlink(tiny_fs / "filler")
    async with await open_part_file(dest, make_key(512 * KiB), force=False) as again:
        assert again.resume_state is ResumeState.RESUMED
        assert again.written == RangeSet([ByteRange(0, 4 * KiB)])
        assert read(again.part_path)[: 4 * KiB] == b"a" * 4 * KiB


async def test_unclosed_part_file_warns(dest: Path) -> None:
    part: PartFile = await open_part_file(dest, make_key(1), force=False)
    with pytest.warns(ResourceWarning, match="unclosed PartFile"):
        part.__del__()  # what the garbage collector would do


# --- checkpoints that survive a killed process vs. a crashed machine ---------------------------


def _control(dest: Path) -> dict[str, object]:
    return dict(json.loads(read(control_path_for(dest))))


async def test_light_checkpoint_records_written_but_not_synced(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    part = await open_part_file(dest, make_key(4 * MiB), force=False)
    async with part:
        await part.write_at(0, b"a" * MiB)
        await part.checkpoint(durable=True)
        await part.write_at(MiB, b"b" * MiB)
        await part.checkpoint(durable=False)
        control = _control(dest)
        assert control["written"] == [[0, 2 * MiB]]
        assert control["synced"] == [[0, MiB]]


@pytest.mark.parametrize(("same_boot", "expected"), [(True, 2 * MiB), (False, MiB)])
async def test_resume_trusts_unsynced_ranges_only_in_the_same_boot(
    tmp_path: Path, same_boot: bool, expected: int
) -> None:
    dest = tmp_path / "f"
    async with await open_part_file(dest, make_key(4 * MiB), force=False) as part:
        await part.write_at(0, b"a" * (2 * MiB))
    control = _control(dest)
    control["synced"] = [[0, MiB]]
    control["boot_id"] = control["boot_id"] if same_boot else "an-earlier-boot"
    write(control_path_for(dest), json.dumps(control).encode())
    again = await open_part_file(dest, make_key(4 * MiB), force=False)
    async with again:
        assert again.written == RangeSet([ByteRange(0, expected)])


@pytest.mark.parametrize(
    "changed", [make_key(100, etag='"v2"'), make_key(101)], ids=["validator", "size"]
)
async def test_changed_file_is_refused_without_restart_if_changed(
    dest: Path, changed: ResumeKey
) -> None:
    async with await open_part_file(dest, make_key(100), force=False) as part:
        await part.write_at(0, b"a" * 50)
    before = (read(part_path_for(dest)), read(control_path_for(dest)))
    with pytest.raises(OriginChanged):
        await open_part_file(dest, changed, force=False, restart_if_changed=False)
    assert (read(part_path_for(dest)), read(control_path_for(dest))) == before  # untouched
    async with await open_part_file(dest, changed, force=False, restart_if_changed=True) as part:
        assert part.resume_state is ResumeState.RESTARTED_CHANGED
        assert part.restart_reason is not None
        assert not part.written


async def test_refusal_leaves_no_data_file_it_created(dest: Path) -> None:
    async with await open_part_file(dest, make_key(100), force=False) as part:
        await part.write_at(0, b"a" * 50)
    part_path_for(dest).unlink()
    with pytest.raises(OriginChanged):
        await open_part_file(dest, make_key(101), force=False, restart_if_changed=False)
    assert not part_path_for(dest).exists()
    assert control_path_for(dest).exists()


async def test_same_file_resumes_with_restart_if_changed_off(dest: Path) -> None:
    async with await open_part_file(dest, make_key(100), force=False) as part:
        await part.write_at(0, b"a" * 50)
    async with await open_part_file(
        dest, make_key(100), force=False, restart_if_changed=False
    ) as part:
        assert part.resume_state is ResumeState.RESUMED
        assert part.restart_reason is None
