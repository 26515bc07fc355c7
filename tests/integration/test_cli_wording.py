"""What ``get`` says when it runs again after a failure (issue #16): "the file changed on
the server" once, not nested in itself; a checksum mismatch of resumed data does not say
"Delivered by: nobody". Real processes, a real origin."""

from __future__ import annotations

from pathlib import Path

from swarmget.testing.cli import run_cli
from swarmget.testing.origin import open_test_origin


async def get(*args: str, home: Path) -> tuple[int, str]:
    env = {"XDG_STATE_HOME": str(home), "COLUMNS": "1000"}
    code, _, err = await run_cli("get", *args, env=env)
    return code, err


async def test_a_changed_file_is_said_once_on_every_run(tmp_path: Path) -> None:
    async with open_test_origin(etag_change_after=200_000, rate_per_ip=2_000_000) as origin:
        origin.add_generated("f.bin", 3_000_000, seed=1)
        for _ in range(2):  # during the download, then on the re-run
            rc, err = await get(origin.url("f.bin"), "-o", str(tmp_path / "f.bin"), home=tmp_path)
            assert rc == 4, err
            assert err.count("changed on the server") == 1, err
            assert err.count("--restart-if-changed") == 1, err


async def test_a_mismatch_of_resumed_data_names_the_earlier_runs(tmp_path: Path) -> None:
    async with open_test_origin() as origin:
        origin.add_generated("g.bin", 1_000_000, seed=1)
        args = (origin.url("g.bin"), "-o", str(tmp_path / "g.bin"), "--checksum", "0" * 64)
        rc, err = await get(*args, home=tmp_path)
        assert rc == 5, err
        assert "Delivered by: origin" in err
        rc, err = await get(*args, home=tmp_path)  # every byte is on disk already
        assert rc == 5, err
        assert "nobody" not in err
        assert "resumed" in err
