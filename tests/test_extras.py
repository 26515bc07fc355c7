"""The hub's and relay's database (SQLAlchemy, aiosqlite, greenlet) is an extra (issue #16):
a node and ``swarmget get`` never import it, and a hub or relay started without it says so
in one line.

The absence is real, not mocked: the subprocesses get a ``sitecustomize`` that puts a finder
first on ``sys.meta_path`` refusing those modules, as an installation without the extra
would (``ModuleNotFoundError``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarmget.testing.origin import MiB, open_test_origin
from swarmget.testing.swarm import start_proc

BLOCKER = """\
import sys


class _NotInstalled:
    blocked = {BLOCKED!r}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""

DATABASE = ("sqlalchemy", "aiosqlite", "greenlet", "asyncpg")


def env_without(tmp_path: Path, blocked: tuple[str, ...]) -> dict[str, str]:
    """The environment of a Python that cannot import ``blocked``."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER.format(BLOCKED=set(blocked)))
    path = os.pathsep.join([str(site), *sys.path])
    # wide: rich wraps a message at 80 columns when stderr is not a terminal
    return {**os.environ, "PYTHONPATH": path, "SWARMGET_SECRET": "s" * 32, "COLUMNS": "400"}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_blocker_works(tmp_path: Path) -> None:
    """The check of the tests below: the blocked modules really cannot be imported."""
    done = run(["-c", "import sqlalchemy"], env_without(tmp_path, DATABASE), tmp_path)
    assert done.returncode == 1
    assert "No module named 'sqlalchemy'" in done.stderr


NODE_SIDE = (
    "swarmget",
    "swarmget.api",
    "swarmget.cli",
    "swarmget.cli.get",
    "swarmget.cli.services",
    "swarmget.run.get",
    "swarmget.run.node",
    "swarmget.run.remote",
    "swarmget.node.daemon",
    "swarmget.web.portal",
    "swarmget.doctor",
)


def test_a_node_and_the_get_path_import_no_database_module(tmp_path: Path) -> None:
    code = (
        f"import importlib, sys\n"
        f"for name in {NODE_SIDE!r}: importlib.import_module(name)\n"
        f"import swarmget\n"
        f"assert callable(swarmget.download) and callable(swarmget.download_async)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {DATABASE!r})\n"
        f"assert not loaded, loaded\n"
    )
    done = run(["-c", code], env_without(tmp_path, DATABASE), tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("service", ["hub", "relay"])
def test_a_service_without_its_database_says_what_to_install(tmp_path: Path, service: str) -> None:
    args = ["-m", "swarmget.cli", service, "--host", "127.0.0.1", "--port", "0"]
    done = run(args, env_without(tmp_path, ("sqlalchemy",)), tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert f"pip install 'swarmget[{service}]'" in lines[0]
    assert "'sqlalchemy' is missing" in lines[0]


def test_a_postgresql_hub_without_asyncpg_says_what_to_install(tmp_path: Path) -> None:
    db = "postgresql+asyncpg://swarmget@127.0.0.1:1/swarmget"
    args = ["-m", "swarmget.cli", "hub", "--host", "127.0.0.1", "--port", "0", "--db", db]
    done = run(args, env_without(tmp_path, ("asyncpg",)), tmp_path)
    assert done.returncode == 2, done.stderr
    assert "pip install 'swarmget[postgres]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


async def test_a_node_runs_and_serves_a_download_without_them(tmp_path: Path) -> None:
    """Not only imports: a ``swarmget node`` and a ``swarmget get`` handed to it, both
    unable to import any database module, download a file from a test origin."""
    env = env_without(tmp_path, DATABASE)
    state, downloads = tmp_path / "state", tmp_path / "downloads"
    args = [
        "node", "--listen", "127.0.0.4", "--port", "0", "--api-port", "0",
        "--state-dir", str(state), "--download-dir", str(downloads),
        "--allow-private-origins", "127.0.0.0/8",
    ]  # fmt: skip
    async with open_test_origin() as origin:
        origin.add_generated("f.bin", MiB + 5, seed=3)
        node = await start_proc(args, tmp_path / "node.log", env)
        try:
            for _ in range(100):  # the node file is written just after the announcement
                if (state / "node.json").exists():
                    break
                await asyncio.sleep(0.05)
            get = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "swarmget.cli", "get", origin.url("f.bin"),
                "-o", str(downloads / "f.bin"), "--state-dir", str(state), "--json",
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(get.communicate(), 60)
        finally:
            await node.stop()
        assert get.returncode == 0, err.decode()
        assert json.loads(out)["ok"] is True
        assert set(origin.stats().bytes_by_ip) == {"127.0.0.4"}  # the node fetched it
    assert "Traceback" not in (tmp_path / "node.log").read_text()
