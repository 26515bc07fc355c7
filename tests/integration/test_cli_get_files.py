"""``swarmget get`` as a real process against hostile files and sizes: an origin announcing
a size no disk holds, ``--max-size``, links planted next to the destination, another user's
part file (made by a real other user), device files at the destination."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.engine.download import FIRST_RANGE
from swarmget.net.origin import OriginClient
from swarmget.storage import ResumeKey
from swarmget.testing.cli import CLI, run_cli
from swarmget.testing.origin import TestOrigin, open_test_origin

KiB = 1024
MiB = 1024 * KiB
SIZE = 3 * MiB + 1
NOBODY = 65534
VICTIM = b"precious bytes of someone else\n"


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", SIZE, seed=11)
        yield o


def listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def error_code(out: str) -> str:
    data = json.loads(out)
    assert data["ok"] is False
    return str(data["error"])


# --- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("announced", [2**63, 2**64 + 7, 10**30])
async def test_an_announced_size_no_disk_holds_is_a_clear_error(
    origin: TestOrigin, tmp_path: Path, announced: int
) -> None:
    origin.configure(announce_size=announced)
    rc, out, err = await run_cli("get", origin.url("f.bin"), "-o", str(tmp_path / "f"), "--json")
    assert rc == 6, err
    assert error_code(out) == "insufficient_storage"
    assert "Traceback" not in err
    assert listing(tmp_path) == set()  # refused before a byte was written
    # nothing was fetched but the probe, which asks for the first range (issue #14)
    fetched = [(r.start, r.end_exclusive) for r in origin.stats().served if r.status == 206]
    assert fetched in ([], [(0, FIRST_RANGE)])


async def test_max_size_refuses_a_larger_file_up_front(origin: TestOrigin, tmp_path: Path) -> None:
    rc, out, err = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path / "f"), "--json", "--max-size", "3M"
    )
    assert rc == 6, err
    assert error_code(out) == "too_large"
    assert listing(tmp_path) == set()
    assert origin.stats().bytes_total == 0
    rc, out, err = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path / "f"), "--json", "--max-size", "4M"
    )
    assert rc == 0, err
    assert (tmp_path / "f").stat().st_size == SIZE


async def test_max_size_stops_a_stream_of_unknown_length(
    origin: TestOrigin, tmp_path: Path
) -> None:
    origin.configure(no_content_length=True)
    rc, out, err = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path / "f"), "--json", "--max-size", "1M"
    )
    assert rc == 6, err
    assert error_code(out) == "too_large"
    assert not (tmp_path / "f").exists()


async def test_a_bad_max_size_is_a_usage_error(origin: TestOrigin, tmp_path: Path) -> None:
    rc, _, err = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path / "f"), "--max-size", "lots"
    )
    assert rc == 2
    assert "Traceback" not in err


# --- links and other users' files --------------------------------------------------------------


async def test_a_link_planted_at_the_part_file_is_not_written_through(
    origin: TestOrigin, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    (tmp_path / "f.part").symlink_to(victim)
    rc, out, err = await run_cli("get", origin.url("f.bin"), "-o", str(tmp_path / "f"), "--json")
    assert rc == 6, err
    assert error_code(out) == "untrusted_file"
    assert victim.read_bytes() == VICTIM
    assert not (tmp_path / "f").exists()


async def test_a_link_planted_at_the_temporary_control_file_is_not_followed(
    origin: TestOrigin, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    (tmp_path / "f.part.json.tmp").symlink_to(victim)
    rc, _, err = await run_cli("get", origin.url("f.bin"), "-o", str(tmp_path / "f"), "--json")
    assert rc == 0, err
    assert victim.read_bytes() == VICTIM
    assert (tmp_path / "f").read_bytes() == origin.content("f.bin")
    assert listing(tmp_path) == {"f", "victim"}


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A world-writable sticky directory (like /tmp) that another user can reach."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("acting as another user needs root and setpriv")
    path = Path(tempfile.mkdtemp(prefix="swarmget-shared-", dir="/tmp"))
    os.chmod(path, 0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


_PLANT = """
import sys
part, control, size, claim = sys.argv[1:5]
with open(part, "wb") as f:
    f.write(b"E" * int(size))
with open(control, "w") as f:
    f.write(claim)
"""


async def _stolen_key(origin: TestOrigin) -> ResumeKey:
    """What a stranger learns by asking the origin, as swarmget would."""
    async with aiohttp.ClientSession() as session:
        info = await OriginClient(session).probe(origin.url("f.bin"))
    v = info.validator
    return ResumeKey(
        url=info.url,
        final_url=info.final_url,
        size=info.size,
        validator_etag=v.etag if v else None,
        validator_last_modified=v.last_modified if v else None,
    )


async def test_another_users_part_file_is_not_resumed(origin: TestOrigin, shared_dir: Path) -> None:
    key = await _stolen_key(origin)
    claim = json.dumps(
        {
            "format": "swarmget-part",
            "version": 2,
            "key": key.to_json(),
            "boot_id": "",
            "written": [[0, SIZE]],
            "synced": [[0, SIZE]],
        }
    )
    evil = b"E" * SIZE
    part, control = shared_dir / "f.part", shared_dir / "f.part.json"
    planted = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, "-c", "import os; os.umask(0)\n" + _PLANT,
         str(part), str(control), str(SIZE), claim],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert planted.returncode == 0, planted.stderr
    assert part.stat().st_uid == NOBODY

    rc, out, err = await run_cli("get", origin.url("f.bin"), "-o", str(shared_dir / "f"), "--json")
    assert rc == 6, err
    assert error_code(out) == "untrusted_file"
    assert not (shared_dir / "f").exists()  # never their bytes under our name
    assert part.read_bytes() == evil  # and their files are left as they were
    assert control.read_text() == claim


async def test_the_result_is_ours_with_a_normal_mode(origin: TestOrigin, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "get", origin.url("f.bin"), "-o", str(tmp_path / "f"), "-q",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=lambda: os.umask(0o002),
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    st = (tmp_path / "f").stat()
    assert st.st_uid == os.geteuid()
    assert stat.S_IMODE(st.st_mode) == 0o644


# --- what --force replaces ---------------------------------------------------------------------


async def test_force_does_not_replace_a_fifo(origin: TestOrigin, tmp_path: Path) -> None:
    dest = tmp_path / "pipe"
    os.mkfifo(dest)
    rc, out, err = await run_cli("get", origin.url("f.bin"), "-o", str(dest), "--force", "--json")
    assert rc == 2, err
    assert error_code(out) == "destination_exists"
    assert stat.S_ISFIFO(os.lstat(dest).st_mode)


async def test_force_does_not_replace_a_device(origin: TestOrigin, tmp_path: Path) -> None:
    dest = tmp_path / "null"
    try:
        os.mknod(dest, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    rc, out, err = await run_cli("get", origin.url("f.bin"), "-o", str(dest), "--force", "--json")
    assert rc == 2, err
    assert error_code(out) == "destination_exists"
    assert stat.S_ISCHR(os.lstat(dest).st_mode)
    assert not (tmp_path / "null.part").exists()


async def test_force_replaces_a_link_the_user_named_not_its_target(
    origin: TestOrigin, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    (tmp_path / "named").symlink_to(victim)
    rc, _, err = await run_cli("get", origin.url("f.bin"), "-o", str(tmp_path / "named"), "--force")
    assert rc == 0, err
    assert not (tmp_path / "named").is_symlink()
    assert (tmp_path / "named").read_bytes() == origin.content("f.bin")
    assert victim.read_bytes() == VICTIM


async def test_force_never_replaces_a_link_under_a_name_the_server_chose(
    origin: TestOrigin, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    (tmp_path / "f.bin").symlink_to(victim)  # the name the URL suggests
    rc, out, err = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path), "--force", "--json"
    )
    assert rc == 2, err
    assert error_code(out) == "destination_exists"
    assert (tmp_path / "f.bin").is_symlink()
    assert victim.read_bytes() == VICTIM
