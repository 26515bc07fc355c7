"""Options of ``swarmget get`` that a download handed to the node cannot honour: a header
is refused with why (the node and its helpers would fetch without it), and the options of
this process's own connections that the node replaces with its settings are named in a
note (and in ``--json``). Real node process, real origin, the real program."""

from __future__ import annotations

import json
from pathlib import Path

from swarmget.cli.app import EXIT_OK, EXIT_USAGE
from swarmget.testing.cli import run_cli
from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import open_local_swarm


async def _cli(*args: str) -> tuple[int, str, str]:
    return await run_cli(*args, env={"XDG_STATE_HOME": "/nonexistent"}, timeout=90)


async def test_a_header_is_refused_and_ignored_options_are_named(tmp_path: Path) -> None:
    async with open_test_origin() as origin, open_local_swarm(tmp_path / "swarm", 1) as swarm:
        origin.add_generated("f.bin", 300_000, seed=12)
        node = swarm.node(0)
        where = ["--state-dir", str(node.state_dir)]
        refused = await _cli(
            "get", origin.url("f.bin"), "-o", str(node.download_dir / "h.bin"),
            "-H", "Authorization: Bearer x", *where,
        )  # fmt: skip
        given = await _cli(
            "get", origin.url("f.bin"), "-o", str(node.download_dir / "f.bin"),
            "-c", "8", "--fsync", "--json", *where,
        )  # fmt: skip
        plain = await _cli(
            "get", origin.url("f.bin"), "-o", str(node.download_dir / "g.bin"), "--json", *where
        )
    rc, _, err = refused
    assert rc == EXIT_USAGE, err
    assert "--header" in err
    assert "--no-node" in err
    assert not (node.download_dir / "h.bin").exists()
    rc, out, err = given
    assert rc == EXIT_OK, err
    assert "-c, --fsync" in err
    assert "--no-node" in err
    assert json.loads(out)["route"]["ignored"] == ["-c", "--fsync"]
    rc, out, err = plain
    assert rc == EXIT_OK, err
    assert "note:" not in err
    assert "ignored" not in json.loads(out)["route"]
