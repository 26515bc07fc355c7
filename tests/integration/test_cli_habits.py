"""Habits of curl, wget and aria2c users (issue #16): -s, -O, -o DIR/, -o - refused with
why, checksums as sha256=HEX or bare hex. Real processes, a real origin, no node."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmget.testing.cli import run_cli
from swarmget.testing.origin import TestOrigin, open_test_origin


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 300_000, seed=4)
        yield o


def no_state(tmp_path: Path) -> dict[str, str]:
    """An environment whose per-user default state directory holds no node."""
    return {"XDG_STATE_HOME": str(tmp_path / "no-state")}


async def test_remote_name_silent_and_a_bare_checksum(origin: TestOrigin, tmp_path: Path) -> None:
    digest = origin.expected_sha256("f.bin")
    rc, out, err = await run_cli(
        "get", "-O", "-s", origin.url("f.bin"), "--checksum", digest,
        cwd=tmp_path, env=no_state(tmp_path),
    )  # fmt: skip
    assert rc == 0, err
    assert out == ""  # silent
    assert (tmp_path / "f.bin").read_bytes() == origin.content("f.bin")
    rc, out, err = await run_cli(
        "get", origin.url("f.bin"), "-o", "g.bin", "--checksum", f"sha256={digest}", "--json",
        cwd=tmp_path, env=no_state(tmp_path),
    )  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["verified"] == ["sha256"]


async def test_output_ending_in_a_slash_is_a_directory(origin: TestOrigin, tmp_path: Path) -> None:
    rc, _, err = await run_cli(
        "get", origin.url("f.bin"), "-o", "new/dir/", "-q", cwd=tmp_path, env=no_state(tmp_path)
    )
    assert rc == 0, err
    assert (tmp_path / "new" / "dir" / "f.bin").read_bytes() == origin.content("f.bin")


async def test_standard_output_and_both_names_are_refused_with_why(
    origin: TestOrigin, tmp_path: Path
) -> None:
    rc, out, err = await run_cli(
        "get", origin.url("f.bin"), "-o", "-", cwd=tmp_path, env=no_state(tmp_path)
    )
    assert rc == 2
    assert out == ""
    assert "standard output" in err
    assert "not supported" in err
    rc, _, err = await run_cli(
        "get", origin.url("f.bin"), "-o", "x", "-O", cwd=tmp_path, env=no_state(tmp_path)
    )
    assert rc == 2
    assert "not both" in err
    assert not list(tmp_path.glob("f.bin*"))


async def test_limit_rate_downloads_here_or_says_why_not(
    origin: TestOrigin, tmp_path: Path
) -> None:
    rc, _, err = await run_cli(
        "get", origin.url("f.bin"), "-o", "r.bin", "--limit-rate", "1M", "-q",
        cwd=tmp_path, env=no_state(tmp_path),
    )  # fmt: skip
    assert rc == 0, err
    assert (tmp_path / "r.bin").read_bytes() == origin.content("f.bin")
    rc, _, err = await run_cli(
        "get", origin.url("f.bin"), "-o", "s.bin", "--limit-rate", "1M", "--hub",
        "http://127.0.0.1:9", cwd=tmp_path, env=no_state(tmp_path),
    )  # fmt: skip
    assert rc == 2
    assert "--limit-rate" in err
    assert "--no-node" in err
    rc, _, err = await run_cli(
        "get", origin.url("f.bin"), "--limit-rate", "fast", cwd=tmp_path, env=no_state(tmp_path)
    )
    assert rc == 2


async def test_a_header_goes_with_this_process_only_or_is_refused_with_why(
    origin: TestOrigin, tmp_path: Path
) -> None:
    """--header is sent on this process's own requests: a swarm's helpers or a relay would
    fetch the file without it (maybe another file: a login page), so it is refused there."""
    rc, _, err = await run_cli(
        "get", origin.url("f.bin"), "-o", "h.bin", "-H", "X-Token: 1", "-q",
        cwd=tmp_path, env=no_state(tmp_path),
    )  # fmt: skip
    assert rc == 0, err
    assert (tmp_path / "h.bin").read_bytes() == origin.content("f.bin")
    for route in (["--hub", "http://127.0.0.1:9"], ["--relay", "http://127.0.0.1:9"]):
        rc, _, err = await run_cli(
            "get", origin.url("f.bin"), "-o", "i.bin", "-H", "X-Token: 1", *route,
            cwd=tmp_path, env=no_state(tmp_path),
        )  # fmt: skip
        assert rc == 2, err
        assert "--header" in err
        assert "--no-node" in err
    assert not list(tmp_path.glob("i.bin*"))
