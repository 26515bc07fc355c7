"""The node key file, on real files: made once (0600 in a 0700 directory), kept across
starts, never trusted when unsafe, never replaced when broken."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from swarmget.core.errors import InvalidNodeKey, UsageError
from swarmget.core.identity import NodeIdentity, is_derived_node_id
from swarmget.node.daemon import NodeConfig, load_identity, open_node
from swarmget.node.keyfile import KEY_FILE, load_node_identity

NOBODY = 65534


def test_first_start_makes_a_private_key_and_later_starts_keep_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_node_identity(state)
    assert is_derived_node_id(first.node_id)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    key = state / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load_node_identity(state).node_id == first.node_id
    seed = bytes.fromhex(key.read_text().strip())
    assert NodeIdentity.from_seed(seed).node_id == first.node_id
    assert [p.name for p in state.iterdir()] == [KEY_FILE]  # no temporary file left


def test_a_key_readable_by_others_is_refused_and_kept(tmp_path: Path) -> None:
    load_node_identity(tmp_path)
    key = tmp_path / KEY_FILE
    before = key.read_bytes()
    key.chmod(0o644)
    with pytest.raises(InvalidNodeKey, match="chmod 600"):
        load_node_identity(tmp_path)
    assert key.read_bytes() == before


def test_a_symlinked_key_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    load_node_identity(elsewhere)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / KEY_FILE).symlink_to(elsewhere / KEY_FILE)
    with pytest.raises(InvalidNodeKey, match="cannot open"):
        load_node_identity(state)


def test_a_key_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to another user")
    load_node_identity(tmp_path)
    os.chown(tmp_path / KEY_FILE, NOBODY, NOBODY)
    with pytest.raises(InvalidNodeKey, match=f"belongs to uid {NOBODY}"):
        load_node_identity(tmp_path)


@pytest.mark.parametrize("content", [b"", b"zz\n", b"00" * 31 + b"\n", b"\xff" * 64])
def test_a_broken_key_is_refused_and_not_replaced(tmp_path: Path, content: bytes) -> None:
    key = tmp_path / KEY_FILE
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(InvalidNodeKey, match="not a key"):
        load_node_identity(tmp_path)
    assert key.read_bytes() == content


def test_another_local_user_cannot_read_the_key() -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to act as another local user")
    as_nobody = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "cat"]

    def read_as_nobody(path: Path) -> bytes | None:
        done = subprocess.run([*as_nobody, str(path)], capture_output=True, timeout=30)
        return done.stdout if done.returncode == 0 else None

    base = Path(tempfile.mkdtemp(prefix="swarmget-key-", dir="/tmp"))  # reachable by nobody
    try:
        base.chmod(0o755)
        state = base / "state"
        load_node_identity(state)
        assert read_as_nobody(state / KEY_FILE) is None  # the directory is 0700
        state.chmod(0o755)  # an operator loosened the directory: the file is still 0600
        (state / "probe").write_bytes(b"readable")
        (state / "probe").chmod(0o644)
        assert read_as_nobody(state / "probe") == b"readable"  # the user can read what it may
        assert read_as_nobody(state / KEY_FILE) is None
    finally:
        shutil.rmtree(base)


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from swarmget.node.keyfile import load_node_identity; "
        "print(load_node_identity(Path(sys.argv[1])).node_id)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "state")], stdout=subprocess.PIPE
        )
        for _ in range(4)
    ]
    ids = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(ids) == 1
    assert ids == {load_node_identity(tmp_path / "state").node_id.encode()}


def test_a_configured_node_id_must_be_the_keys(tmp_path: Path) -> None:
    own = load_node_identity(tmp_path).node_id
    assert load_identity(tmp_path, own).node_id == own
    with pytest.raises(UsageError, match="fingerprints of the node key"):
        load_identity(tmp_path, "node-a")


async def test_a_node_refuses_to_start_on_a_key_others_could_read(tmp_path: Path) -> None:
    """The node checks its key before it tightens its state directory: a key that was
    readable by others may be leaked and must not be silently made private and used."""
    state = tmp_path / "state"
    load_node_identity(state)
    (state / KEY_FILE).chmod(0o644)
    config = NodeConfig(secret=b"k" * 32, state_dir=state, download_dir=tmp_path / "d")
    with pytest.raises(InvalidNodeKey):
        async with open_node(config):
            pass
    assert stat.S_IMODE((state / KEY_FILE).stat().st_mode) == 0o644  # left as found
