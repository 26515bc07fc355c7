"""A plain ``swarmget get`` is handed to the node before the command's imports (issue #14,
``swarmget.run.early``), and the command then adopts that download only when it is the
very request it would send itself; otherwise, or when the command fails or goes another
way, the early download is cancelled. Real node process on 127.0.0.2, real origin, the
real program in its own process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.cli.app import EXIT_FAILED
from swarmget.core.errors import NodeLost
from swarmget.run.early import PlainGet, parse_plain_get
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, NodeHandle, open_local_swarm

MiB = 1024 * 1024

#: The program with a chosen early hand-off: ``start`` on the arguments before ``--then``,
#: then the command on those after it, adopting or cancelling what ``start`` sent.
EARLY_THEN = """
import sys
from swarmget.run.early import start
i = sys.argv.index("--then")
early = start(sys.argv[1:i])
sys.stderr.write(f"early: {early.download_id if early else None}\\n")
from swarmget.cli.app import ProgramRun, main
try:
    main.main(sys.argv[i + 1:], obj=ProgramRun(early))
finally:
    if early is not None:
        early.drop()
"""


async def _run(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any] | None, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return _answer(proc, out, err)


def _answer(
    proc: asyncio.subprocess.Process, out: bytes, err: bytes
) -> tuple[int, dict[str, Any] | None, str]:
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if out.strip() else None, err.decode()


async def _downloads(node: NodeHandle) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        status, data = await NodeApi(session, node).call("GET", "/v1/downloads")
    assert status == 200
    items = data["downloads"] if isinstance(data, dict) else data
    return list(items)


async def _until_ended(node: NodeHandle, download_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        return await NodeApi(session, node).wait(download_id, limit=30)


def _get_args(origin: TestOrigin, node: NodeHandle, target: Path) -> list[str]:
    return [
        "get", origin.url("f.bin"), "-o", str(target), "--json",
        "--state-dir", str(node.state_dir),
    ]  # fmt: skip


async def test_a_node_that_dies_before_the_command_follows_is_a_lost_node(
    tmp_path: Path,
) -> None:
    """The early download reached the node, which then died before the command asked it
    again: a lost node (exit 3, ``node_lost``), as when it dies a moment later; the command
    never downloads beside it into the same file."""
    async with open_test_origin() as origin, open_local_swarm(tmp_path / "swarm", 1) as swarm:
        origin.add_generated("f.bin", 2 * MiB + 4, seed=24)
        origin.configure(first_byte_delay=5.0)  # (the node's download cannot finish first)
        node = swarm.node(0)
        target = node.download_dir / "f.bin"
        plain = _get_args(origin, node, target)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", EARLY_THEN, *plain, "--then", *plain,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "WAIT": "1", "XDG_STATE_HOME": "/nonexistent"},
        )  # fmt: skip
        assert proc.stderr is not None
        assert proc.stdin is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        assert line.startswith("early: "), line
        assert line.split()[1] != "None", line  # handed to the node
        node.proc.signal(signal.SIGKILL)
        await node.proc.process.wait()
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        code, answer, said = _answer(proc, out, err)
        served = origin.stats().requests_by_method.get("GET", 0)
    assert code == EXIT_FAILED, said
    assert answer is not None
    assert answer["error"] == NodeLost.code
    assert served <= 1  # (the dead node's probe at most: nobody downloaded here)
    assert not target.exists()


async def test_the_program_hands_a_plain_get_over_before_its_command_runs(
    tmp_path: Path,
) -> None:
    async with open_test_origin() as origin, open_local_swarm(tmp_path / "swarm", 1) as swarm:
        origin.add_generated("f.bin", 3 * MiB + 1, seed=21)
        node = swarm.node(0)
        target = node.download_dir / "f.bin"
        checksum = ["--checksum", origin.expected_sha256("f.bin")]  # (bare hex, as sha256sum)
        args = [*_get_args(origin, node, target), *checksum]
        code, answer, err = await _run("-m", "swarmget.cli", *args)
        assert code == 0, err
        assert answer is not None
        assert answer["route"]["route"] == "node"
        # accepted before `get`'s code ran (its timeline starts there): handed over early
        assert answer["command_timeline"]["accepted"] < 0
        assert answer["verified"] == ["sha256"]  # the checksum went with the early request
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        assert digest == origin.expected_sha256("f.bin")
        downloads = await _downloads(node)
    assert [d["state"] for d in downloads] == ["done"]  # one download: adopted, not resent


async def test_a_request_that_differs_cancels_the_early_download_first(tmp_path: Path) -> None:
    """The command's own request has a checksum the early one does not (the command is run
    on other arguments than the hand-off here, which ``run`` never does): the early download
    is cancelled (and has ended) before the command sends its own, to the same output."""
    async with open_test_origin() as origin, open_local_swarm(tmp_path / "swarm", 1) as swarm:
        origin.add_generated("f.bin", 3 * MiB + 2, seed=22)
        node = swarm.node(0)
        target = node.download_dir / "f.bin"
        plain = _get_args(origin, node, target)
        checksum = ["--checksum", f"sha256:{origin.expected_sha256('f.bin')}"]
        code, answer, err = await _run("-c", EARLY_THEN, *plain, "--then", *plain, *checksum)
        assert code == 0, err
        early_id = err.split("early: ", 1)[1].split()[0]
        assert answer is not None
        assert answer["command_timeline"]["accepted"] >= 0  # its own request, not the early one
        assert answer["verified"] == ["sha256"]  # the checksum only the command's request has
        assert hashlib.sha256(target.read_bytes()).hexdigest() == origin.expected_sha256("f.bin")
        states = {d["id"]: d["state"] for d in await _downloads(node)}
    # the early one was cancelled, or removed with its file if it had finished already
    assert states.pop(early_id, "cancelled") == "cancelled"
    assert list(states.values()) == ["done"]


async def test_a_command_that_fails_cancels_the_early_download(tmp_path: Path) -> None:
    async with open_test_origin() as origin, open_local_swarm(tmp_path / "swarm", 1) as swarm:
        origin.add_generated("f.bin", 3 * MiB + 3, seed=23)
        origin.configure(first_byte_delay=5.0)  # the early download is still running
        node = swarm.node(0)
        target = node.download_dir / "f.bin"
        plain = _get_args(origin, node, target)
        bad = [*plain, "--checksum", "sha256:nonsense"]
        code, answer, err = await _run("-c", EARLY_THEN, *plain, "--then", *bad)
        assert code == 2, err  # the command's own usage error
        assert answer is not None
        assert answer["error"] == "invalid_checksum"
        early_id = err.split("early: ", 1)[1].split()[0]
        ended = await _until_ended(node, early_id)
    assert ended["state"] == "cancelled"
    assert not target.exists()


@pytest.mark.parametrize(
    ("argv", "plain"),
    [
        (["get", "http://o/f"], PlainGet(url="http://o/f")),
        (
            ["get", "-o", "x.bin", "http://o/f", "--json", "-q", "--force"],
            PlainGet(url="http://o/f", output="x.bin", force=True),
        ),
        (
            ["get", "http://o/f", "--output", "d/x", "--state-dir", "/s", "-s", "--silent"],
            PlainGet(url="http://o/f", output="d/x", state_dir="/s"),
        ),
        (
            ["get", "http://o/f", "--checksum", "sha256:00", "--checksum", "md5=11"],
            PlainGet(url="http://o/f", checksums=("sha256:00", "md5=11")),
        ),
    ],
)
def test_a_plain_get_is_recognised(argv: list[str], plain: PlainGet) -> None:
    assert parse_plain_get(argv) == plain


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["status"],
        ["--config", "c.toml", "get", "http://o/f"],  # a global option: the command's
        ["get"],
        ["get", "http://o/f", "http://o/g"],
        ["get", "http://o/f", "--checksum"],
        ["get", "http://o/f", "--checksum=sha256:00"],
        ["get", "http://o/f", "-c", "8"],
        ["get", "http://o/f", "--hub", "http://h"],
        ["get", "http://o/f", "--no-node"],
        ["get", "http://o/f", "--detach"],
        ["get", "http://o/f", "-o", "a", "-o", "b"],  # twice: click takes the last
        ["get", "http://o/f", "-o"],
        ["get", "http://o/f", "-o", "-"],
        ["get", "http://o/f", "-o", "dir/"],
        ["get", "http://o/f", "--output=x"],
        ["get", "--", "http://o/f"],
        ["get", "-O", "http://o/f"],
    ],
)
def test_anything_else_is_left_to_the_command(argv: list[str]) -> None:
    assert parse_plain_get(argv) is None


#: ``run.early.start`` alone: the download it sent and the modules it needed for it.
EARLY_MODULES = """
import json, sys
from swarmget.run.early import start
early = start(sys.argv[1:])
print(json.dumps({"id": early and early.download_id, "modules": sorted(sys.modules)}))
if early is not None:
    early.drop()
"""


async def test_the_early_hand_off_imports_nothing_heavy(tmp_path: Path) -> None:
    """What makes it early: no click, no asyncio, no aiohttp, no pydantic, none of the
    engine's modules before the node has the download."""
    async with open_test_origin() as origin, open_local_swarm(tmp_path / "swarm", 1) as swarm:
        origin.add_generated("f.bin", 1 * MiB, seed=25)
        node = swarm.node(0)
        target = node.download_dir / "f.bin"
        env = {k: v for k, v in os.environ.items() if k != "SWARMGET_CONFIG"}
        env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")  # (no file: no TOML to read)
        args = _get_args(origin, node, target)
        code, answer, err = await _run("-c", EARLY_MODULES, *args, env=env)
    assert code == 0, err
    assert answer is not None
    assert isinstance(answer["id"], str)  # it did hand the download over
    heavy = ("click", "asyncio", "aiohttp", "pydantic", "rich", "swarmget.engine", "swarmget.cli")
    # ... nor what a plain `get` does not need, ~25 ms of its start (issue #14): a framing
    # library (run.node_http reads the node's answer itself), typing, the TOML parser
    # without a config file, the node's token maker (secrets, hashlib), the checksum parser
    heavy += ("h11", "typing", "secrets", "hashlib", "swarmget.core.digests")
    if not Path("/etc/swarmget/config.toml").is_file():
        heavy += ("tomllib",)
    modules: list[str] = answer["modules"]
    assert [m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy)] == []
