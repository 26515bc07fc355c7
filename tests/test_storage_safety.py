"""storage.py against a hostile neighbourhood: links, other users' files, special files,
sizes no disk can hold. Every test uses real files (and, as root, real other owners)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmget.core.errors import (
    DestinationExists,
    FileTooLarge,
    InsufficientStorage,
    InvalidDestination,
    UntrustedFile,
)
from swarmget.core.filenames import WORK_SUFFIX
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.storage import (
    CONTROL_SUFFIX,
    ResumeKey,
    ResumeState,
    control_path_for,
    open_part_file,
    part_path_for,
)

NOBODY = 65534
VICTIM = b"precious bytes of someone else\n"


def make_key(size: int | None) -> ResumeKey:
    return ResumeKey(url="http://o/f", final_url="http://o/f", size=size, validator_etag='"v1"')


def tmp_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json.tmp")


def listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def poisoned_control(size: int) -> bytes:
    """A control file claiming every byte is on disk, as a stranger would plant it."""
    return json.dumps(
        {
            "format": "swarmget-part",
            "version": 2,
            "key": make_key(size).to_json(),
            "boot_id": "",
            "written": [[0, size]],
            "synced": [[0, size]],
        }
    ).encode()


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("making files of another user (chown) needs root")


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "out.bin"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(VICTIM)
    return path


@pytest.fixture
def umask_002() -> Iterator[None]:
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


# --- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [2**63, 2**63 - 1, 2**64 + 5])
async def test_a_size_no_disk_can_hold_is_refused_before_anything_is_created(
    dest: Path, size: int
) -> None:
    with pytest.raises(InsufficientStorage):
        await open_part_file(dest, make_key(size), force=False)
    assert listing(dest.parent) == set()


async def test_a_size_over_max_size_is_refused_up_front(dest: Path) -> None:
    with pytest.raises(FileTooLarge, match="more than the limit of 99 bytes"):
        await open_part_file(dest, make_key(100), force=False, max_size=99)
    assert listing(dest.parent) == set()
    async with await open_part_file(dest, make_key(99), force=False, max_size=99) as part:
        await part.write_at(0, b"x" * 99)
        await part.finalize()
    assert dest.read_bytes() == b"x" * 99


async def test_an_unknown_size_stream_stops_at_max_size(dest: Path) -> None:
    async with await open_part_file(dest, make_key(None), force=False, max_size=10) as part:
        await part.write_at(0, b"a" * 8)
        with pytest.raises(FileTooLarge):
            await part.write_at(8, b"b" * 3)
        assert part.written == RangeSet([ByteRange(0, 8)])


async def test_a_name_too_long_for_the_control_file_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / ("n" * 242)  # + ".part.json.tmp" = 256 bytes
    with pytest.raises(InvalidDestination, match="too long"):
        await open_part_file(dest, make_key(10), force=False)
    assert listing(tmp_path) == set()
    ok = tmp_path / ("n" * 241)
    async with await open_part_file(ok, make_key(3), force=False) as part:
        await part.write_at(0, b"abc")
        await part.checkpoint()
        await part.finalize()
    assert listing(tmp_path) == {ok.name}


# --- links -------------------------------------------------------------------------------------


async def test_a_link_at_the_part_file_is_never_written_through(dest: Path, victim: Path) -> None:
    part = part_path_for(dest)
    part.symlink_to(victim)
    with pytest.raises(UntrustedFile, match="symbolic link"):
        await open_part_file(dest, make_key(100), force=False)
    assert victim.read_bytes() == VICTIM
    assert part.is_symlink()
    assert not control_path_for(dest).exists()


async def test_a_dangling_link_at_the_part_file_creates_nothing(dest: Path, tmp_path: Path) -> None:
    target = tmp_path / "planted-target"
    part_path_for(dest).symlink_to(target)
    with pytest.raises(UntrustedFile):
        await open_part_file(dest, make_key(100), force=False)
    assert not os.path.lexists(target)


async def test_a_link_at_the_control_file_is_refused(dest: Path, victim: Path) -> None:
    control_path_for(dest).symlink_to(victim)
    with pytest.raises(UntrustedFile, match="symbolic link"):
        await open_part_file(dest, make_key(100), force=False)
    assert victim.read_bytes() == VICTIM


async def test_a_link_at_the_temporary_control_file_is_replaced_not_followed(
    dest: Path, victim: Path
) -> None:
    tmp_of(dest).symlink_to(victim)
    async with await open_part_file(dest, make_key(5), force=False) as part:
        await part.write_at(0, b"hello")
        await part.checkpoint()
        assert not os.path.lexists(tmp_of(dest))
        assert stat.S_ISREG(os.lstat(control_path_for(dest)).st_mode)
        await part.finalize()
    assert victim.read_bytes() == VICTIM
    assert dest.read_bytes() == b"hello"


async def test_a_hard_link_to_our_own_file_is_not_truncated(dest: Path, victim: Path) -> None:
    os.link(victim, part_path_for(dest))
    with pytest.raises(UntrustedFile, match="hard link"):
        await open_part_file(dest, make_key(100), force=False)
    assert victim.read_bytes() == VICTIM


async def test_a_part_file_swapped_meanwhile_is_not_published(dest: Path, victim: Path) -> None:
    part = await open_part_file(dest, make_key(5), force=False)
    await part.write_at(0, b"hello")
    os.replace(victim, part.part_path)  # someone renames their file over ours
    with pytest.raises(UntrustedFile, match="replaced"):
        await part.finalize()
    assert not os.path.lexists(dest)


# --- other users' files -------------------------------------------------------------------------


async def test_a_strangers_part_file_is_neither_resumed_nor_touched(dest: Path) -> None:
    needs_root()
    part, control = part_path_for(dest), control_path_for(dest)
    part.write_bytes(b"EVIL" * 25)
    control.write_bytes(poisoned_control(100))
    for path in (part, control):
        os.chown(path, NOBODY, NOBODY)
        os.chmod(path, 0o666)
    with pytest.raises(UntrustedFile, match="another user"):
        await open_part_file(dest, make_key(100), force=False)
    assert part.read_bytes() == b"EVIL" * 25
    assert control.read_bytes() == poisoned_control(100)
    assert os.stat(part).st_uid == NOBODY
    assert not dest.exists()


async def test_a_strangers_control_file_alone_is_refused(dest: Path) -> None:
    needs_root()
    control = control_path_for(dest)
    control.write_bytes(poisoned_control(100))
    os.chown(control, NOBODY, NOBODY)
    with pytest.raises(UntrustedFile, match="another user"):
        await open_part_file(dest, make_key(100), force=False)
    assert control.read_bytes() == poisoned_control(100)


async def test_an_own_part_file_writable_by_others_is_not_resumed(dest: Path) -> None:
    async with await open_part_file(dest, make_key(4), force=False) as part:
        await part.write_at(0, b"good")
    os.chmod(part_path_for(dest), 0o666)
    with pytest.raises(UntrustedFile, match="writable by other users"):
        await open_part_file(dest, make_key(4), force=False)


async def test_our_own_part_file_resumes(dest: Path) -> None:
    async with await open_part_file(dest, make_key(8), force=False) as part:
        await part.write_at(0, b"good")
    async with await open_part_file(dest, make_key(8), force=False) as again:
        assert again.resume_state is ResumeState.RESUMED
        assert again.written == RangeSet([ByteRange(0, 4)])


async def test_files_are_private_until_done_then_a_normal_mode(dest: Path, umask_002: None) -> None:
    part = await open_part_file(dest, make_key(4), force=False)
    await part.write_at(0, b"done")
    await part.checkpoint()
    assert stat.S_IMODE(os.stat(part.part_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(part.control_path).st_mode) == 0o600
    await part.finalize()
    st = os.stat(dest)
    assert stat.S_IMODE(st.st_mode) == 0o644  # 0644 minus the umask 002, not 0664
    assert st.st_uid == os.geteuid()


# --- what --force may replace ------------------------------------------------------------------


async def test_force_never_replaces_a_fifo(dest: Path) -> None:
    os.mkfifo(dest)
    with pytest.raises(DestinationExists, match="named pipe"):
        await open_part_file(dest, make_key(3), force=True)
    assert stat.S_ISFIFO(os.lstat(dest).st_mode)
    assert not part_path_for(dest).exists()


async def test_force_never_replaces_a_device(dest: Path) -> None:
    try:
        os.mknod(dest, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    with pytest.raises(DestinationExists, match="character device"):
        await open_part_file(dest, make_key(3), force=True)
    assert stat.S_ISCHR(os.lstat(dest).st_mode)


async def test_a_device_appearing_before_the_rename_is_not_replaced(dest: Path) -> None:
    part = await open_part_file(dest, make_key(3), force=True)
    await part.write_at(0, b"new")
    os.mkfifo(dest)
    with pytest.raises(DestinationExists, match="named pipe"):
        await part.finalize()
    assert stat.S_ISFIFO(os.lstat(dest).st_mode)
    assert part_path_for(dest).read_bytes() == b"new"  # kept


async def test_force_replaces_a_link_not_its_target(dest: Path, victim: Path) -> None:
    dest.symlink_to(victim)
    with pytest.raises(DestinationExists, match="already exists"):
        await open_part_file(dest, make_key(3), force=False)
    async with await open_part_file(dest, make_key(3), force=True) as part:
        await part.write_at(0, b"new")
        await part.finalize()
    assert not dest.is_symlink()
    assert dest.read_bytes() == b"new"
    assert victim.read_bytes() == VICTIM


async def test_a_dangling_link_at_the_destination_is_not_followed(
    dest: Path, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    part = await open_part_file(dest, make_key(3), force=False)
    await part.write_at(0, b"new")
    dest.symlink_to(target)
    with pytest.raises(DestinationExists):
        await part.finalize()
    assert not os.path.lexists(target)
    assert dest.is_symlink()


def test_server_chosen_names_leave_room_for_the_longest_work_file() -> None:
    assert WORK_SUFFIX == CONTROL_SUFFIX + ".tmp"  # what core.filenames reserves room for


async def test_an_announced_length_without_ranges_is_checked_up_front(dest: Path) -> None:
    with pytest.raises(InsufficientStorage):
        await open_part_file(dest, make_key(None), force=False, expected_size=2**63)
    with pytest.raises(FileTooLarge):
        await open_part_file(dest, make_key(None), force=False, expected_size=11, max_size=10)
    assert listing(dest.parent) == set()
