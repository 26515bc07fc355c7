"""An origin that lies now and then is judged by its recent answers, not banned for good.

The origin answers one range request in three with a ``Content-Range`` shifted by one byte
(the body itself is right). It is the only source: the download must back off and carry on
with its good answers, and end with the right bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmget.core.errors import NoSourcesLeft
from swarmget.core.scheduler import SchedulerConfig
from swarmget.engine import DownloadSpec
from swarmget.run.local import LocalOptions, open_local_download
from swarmget.testing.origin import TestOrigin, open_test_origin

KiB = 1024
MiB = 1024 * KiB
SIZE = 6 * MiB + 4321
CLI = [sys.executable, "-m", "swarmget.cli"]


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(lie_content_range_every=3) as o:
        o.add_generated("f.bin", SIZE, seed=5)
        yield o


def lies(origin: TestOrigin) -> int:
    """206 answers the origin gave (every third of them lied)."""
    return sum(1 for r in origin.stats().served if r.status == 206) // 3


async def test_swarmget_get_completes_against_an_origin_lying_one_answer_in_three(
    origin: TestOrigin, tmp_path: Path
) -> None:
    out = tmp_path / "f.bin"
    proc = await asyncio.create_subprocess_exec(
        *CLI, "get", origin.url("f.bin"), "-o", str(out), "--json",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    result = json.loads(stdout)
    assert result["ok"] is True
    # straight from the origin, no digest known: the result says nothing was checked
    assert result["verification"]["level"] == "none"
    assert result["verification"]["helper_bytes"] == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() == origin.expected_sha256("f.bin")
    assert lies(origin) >= 4  # more lies than the old "3 bad answers: banned" allowed


async def test_the_engine_backs_off_and_completes(origin: TestOrigin, tmp_path: Path) -> None:
    config = SchedulerConfig(min_piece=256 * KiB, max_piece=256 * KiB, backoff_initial=0.05)
    spec = DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "out", scheduler=config)
    async with open_local_download(spec, LocalOptions(connections=4)) as download:
        result = await download.run()
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == origin.expected_sha256("f.bin")
    (src,) = result.sources
    assert src.failures >= 4  # it lied, and was backed off each time, never banned
    assert src.ban_reason is None


async def test_an_origin_that_always_lies_still_fails_clearly(tmp_path: Path) -> None:
    async with open_test_origin(lie_content_range_every=1) as o:
        o.add_generated("f.bin", SIZE, seed=5)
        spec = DownloadSpec(url=o.url("f.bin"), output=tmp_path / "out")
        with pytest.raises(NoSourcesLeft):
            async with open_local_download(spec, LocalOptions(connections=4)) as download:
                await download.run()
    assert not (tmp_path / "out").exists()
