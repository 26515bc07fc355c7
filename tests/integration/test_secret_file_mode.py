"""A swarm secret file other users may read is used, but never silently (issue #12): the
command says so on stderr (naming the file and its mode) and ``swarmget doctor`` fails."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarmget.testing.swarm import start_proc

CLI = [sys.executable, "-m", "swarmget.cli"]


def env_for(tmp_path: Path, secret: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMGET_")}
    return {
        **env,
        "SWARMGET_SECRET_FILE": str(secret),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no stray config file
        "COLUMNS": "300",
    }


def secret_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / f"secret-{mode:o}"
    path.write_text("a-swarm-secret-of-enough-length\n")
    os.chmod(path, mode)
    return path


async def doctor(tmp_path: Path, secret: Path) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "doctor", "--state-dir", str(tmp_path / "no-node"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(tmp_path, secret),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode(), err.decode()


@pytest.mark.parametrize("mode", [0o644, 0o606, 0o620], ids=oct)
async def test_doctor_reports_a_secret_file_others_may_read_or_write(
    tmp_path: Path, mode: int
) -> None:
    secret = secret_file(tmp_path, mode)
    out, err = await doctor(tmp_path, secret)
    assert f"✗ swarm secret: 31 bytes from file {secret}" in out, out
    assert f"(mode {mode:o})" in out
    assert f"chmod 600 {secret}" in out
    warnings = [line for line in err.splitlines() if str(secret) in line]
    assert len(warnings) == 1, err
    assert f"mode {mode:o}" in warnings[0]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400], ids=oct)
async def test_a_private_secret_file_is_fine(tmp_path: Path, mode: int) -> None:
    secret = secret_file(tmp_path, mode)
    out, err = await doctor(tmp_path, secret)
    assert f"✓ swarm secret: 31 bytes from file {secret}" in out, out
    assert str(secret) not in err


async def test_a_node_logs_one_line_about_a_world_readable_secret(tmp_path: Path) -> None:
    secret = secret_file(tmp_path, 0o644)
    args = [
        "node", "--listen", "127.0.0.1", "--port", "0", "--api-port", "0",
        "--state-dir", str(tmp_path / "state"), "--download-dir", str(tmp_path / "dl"),
    ]  # fmt: skip
    proc = await start_proc(args, tmp_path / "node.log", env_for(tmp_path, secret))
    await proc.stop()
    log = (tmp_path / "node.log").read_text()
    lines = [line for line in log.splitlines() if str(secret) in line]
    assert len(lines) == 1
    assert "WARNING" in lines[0]
    assert "mode 644" in lines[0]
