"""A port already taken stops every service with one line naming the option to change
(issue #16: a second node on one host crashed with a 68-line traceback). Real processes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmget.testing.cli import run_cli

CLI_ENV = {"SWARMGET_SECRET": "s" * 32, "COLUMNS": "60"}


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["node", "--port", "{port}", "--api-port", "0"], "swarmget node --port"),
        (["node", "--port", "0", "--api-port", "{port}"], "swarmget node --api-port"),
        (["hub", "--host", "127.0.0.1", "--port", "{port}"], "swarmget hub --port"),
        (["relay", "--host", "127.0.0.1", "--port", "{port}"], "swarmget relay --port"),
    ],
)
async def test_a_port_in_use_is_one_line_naming_the_option(
    taken: int, tmp_path: Path, command: list[str], option: str
) -> None:
    args = [a.format(port=taken) for a in command]
    extra = {
        "node": ["--state-dir", str(tmp_path / "s"), "--download-dir", str(tmp_path / "d")],
        "hub": ["--db", f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"],
        "relay": ["--cache-dir", str(tmp_path / "cache")],
    }[args[0]]
    rc, _, err = await run_cli(*args, *extra, env=CLI_ENV)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"127.0.0.1:{taken}: address already in use" in err
    assert option in err
