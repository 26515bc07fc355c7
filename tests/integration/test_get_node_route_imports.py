"""``swarmget get`` handed to a running node costs little besides the download (issue #14):
it imports only what that route needs (the node downloads, so the command must not pay for
the engine's machinery, the origin clients, the storage layer, the database or the portal's
templates), and as the program it ends as soon as its answer is written, without the
interpreter's teardown (``cli.app.leave``). Real node process on 127.0.0.2, real origin,
the real command in its own process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import open_local_swarm

MiB = 1024 * 1024

#: The command's click group (``swarmget.cli.main``; the installed program,
#: ``swarmget.cli:run``, hands a plain `get` over first: test_early_handoff.py), writing the
#: modules it imported to ``argv[1]`` when the interpreter exits (after ``main`` returned).
CLI_RECORDING_MODULES = """
import atexit, json, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from swarmget.cli import main
main(sys.argv[2:])
"""

#: Never imported by the node route: modules (and their submodules) ...
FORBIDDEN = (
    "aiohttp",  # the node is asked on its Unix socket by run.node_http
    "pydantic",  # the request is built by protocol.user_create within the model's bounds
    "cryptography",  # (the content models' identities, with pydantic's models)
    "rich",  # `get -q --json` prints nothing on stderr: no console, no progress view
    "sqlalchemy",
    "jinja2",
    "swarmget.engine.download",
    "swarmget.engine.segmented",
    "swarmget.engine.checks",
    "swarmget.net",  # origin clients, the raw HTTP client, peer and hub clients
    "swarmget.storage",
    "swarmget.node.downloads",
    "swarmget.node.requester",
    "swarmget.node.daemon",
    "swarmget.hub",
    "swarmget.relay",
    "swarmget.web",
    "swarmget.cli.services",
    "swarmget.cli.operator",
    # the scheduler's machinery (~17 ms at every start): its data types are in core.scheduling
    "swarmget.core.scheduler",
    "swarmget.core.selection",
    "swarmget.core.sources",
    "swarmget.core.source",
)
#: ... and of the engine package, only its data types (``engine.spec``; ``engine.sharing``,
#: for the ``SharingReport`` a shared download's result carries, is imported when one is read)
ENGINE_ALLOWED = {"swarmget.engine", "swarmget.engine.spec"}


def forbidden_in(modules: list[str]) -> list[str]:
    bad = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    engine = [m for m in modules if m.startswith("swarmget.engine.") or m == "swarmget.engine"]
    return bad + [m for m in engine if m not in ENGINE_ALLOWED]


async def test_the_node_route_imports_no_engine_nor_database(tmp_path: Path) -> None:
    async with open_test_origin() as origin, open_local_swarm(tmp_path / "swarm", 1) as swarm:
        origin.add_generated("f.bin", 1 * MiB + 3, seed=11)
        node = swarm.node(0)
        target = node.download_dir / "f.bin"
        record = tmp_path / "modules.json"
        args = [
            sys.executable, "-c", CLI_RECORDING_MODULES, str(record),
            "get", origin.url("f.bin"), "-o", str(target), "--json",
            "--state-dir", str(node.state_dir),
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["route"]["route"] == "node"  # the route under test was taken
    assert hashlib.sha256(target.read_bytes()).hexdigest() == origin.expected_sha256("f.bin")
    modules = json.loads(record.read_text())
    assert "swarmget.run.remote" in modules  # (the record is of the node route's process)
    assert forbidden_in(modules) == []


#: The command as the program runs it (arguments from ``sys.argv``), or called with its
#: arguments (as a test or a library would: ``CALLED`` in the environment); an ``atexit``
#: handler shows whether the interpreter's teardown ran.
CLI_MARKING_TEARDOWN = """
import atexit, os, sys
marker = sys.argv.pop(1)
atexit.register(lambda: open(marker, "w").write("teardown"))
from swarmget.cli import main
if os.environ.get("CALLED"):
    main(sys.argv[1:])
else:
    main()
"""


async def test_the_program_ends_without_teardown_once_its_answer_is_written(
    tmp_path: Path,
) -> None:
    async with open_test_origin() as origin, open_local_swarm(tmp_path / "swarm", 1) as swarm:
        origin.add_generated("f.bin", 1 * MiB + 5, seed=12)
        node = swarm.node(0)
        answers = {}
        for how in ("program", "called"):
            target = node.download_dir / f"{how}.bin"
            args = [
                sys.executable, "-c", CLI_MARKING_TEARDOWN, str(tmp_path / how),
                "get", origin.url("f.bin"), "-o", str(target), "--json",
                "--state-dir", str(node.state_dir),
            ]  # fmt: skip
            env = {**os.environ, **({"CALLED": "1"} if how == "called" else {})}
            proc = await asyncio.create_subprocess_exec(
                *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()
            answers[how] = json.loads(out)  # written whole before the process ended
            assert answers[how]["route"]["route"] == "node"
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            assert digest == origin.expected_sha256("f.bin")  # verified and in place
    assert not (tmp_path / "program").exists()  # ended at once: no teardown
    assert (tmp_path / "called").read_text() == "teardown"  # a caller's process goes on
