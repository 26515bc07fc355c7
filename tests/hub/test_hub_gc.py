"""A hub process sets the garbage collector up for serving (``net.serving_gc``): what start-up
made is frozen out of the collector's sight and the thresholds are raised, by both entry
points (``swarmget hub`` and ``python -m swarmget.hub``), as its ``/metrics`` shows; a node
(not tuned) shows the defaults there."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarmget.net.metrics import service_registry
from swarmget.net.serving_gc import FULL, MIDDLE, YOUNG

SECRET = b"gc-test-secret-0123456789abcdef"
START_TIMEOUT = 20.0


def settings(page: str) -> tuple[float, dict[str, float]]:
    """(frozen objects, threshold by generation) from a ``/metrics`` page."""
    frozen, thresholds = -1.0, {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == "swarmget_gc_frozen_objects":
                frozen = sample.value
            elif sample.name == "swarmget_gc_threshold":
                thresholds[sample.labels["generation"]] = sample.value
    return frozen, thresholds


@pytest.fixture
async def hub_command(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """A hub started by the entry point ``request.param``: (its URL, the process)."""
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    module = str(request.param)
    command = [sys.executable, "-m", module] + (["hub"] if module == "swarmget.cli" else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMGET_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    process = await asyncio.create_subprocess_exec(
        *command,
        "--host=127.0.0.1",
        "--port=0",
        f"--db=sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
        f"--secret-file={secret_file}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            line = await process.stdout.readline()
        assert line, f"{module} did not start"
        yield json.loads(line)["url"], process
    finally:
        if process.returncode is None:
            process.terminate()
            async with asyncio.timeout(START_TIMEOUT):
                await process.wait()


@pytest.mark.parametrize("hub_command", ["swarmget.cli", "swarmget.hub"], indirect=True)
async def test_a_hub_process_freezes_its_start_up_and_raises_the_thresholds(
    hub_command: tuple[str, asyncio.subprocess.Process],
) -> None:
    url, _ = hub_command
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        assert resp.status == 200
        page = await resp.text()
    frozen, thresholds = settings(page)
    assert frozen > 10_000  # the imports (~90,000 objects), never walked again
    assert thresholds == {"0": YOUNG, "1": MIDDLE, "2": FULL}


def test_an_untuned_process_shows_the_defaults_and_nothing_frozen() -> None:
    from prometheus_client import generate_latest

    page = generate_latest(service_registry()).decode()
    frozen, thresholds = settings(page)
    assert frozen == gc.get_freeze_count() == 0  # (pytest's own process: never tuned)
    assert tuple(thresholds[str(g)] for g in range(3)) == gc.get_threshold()
