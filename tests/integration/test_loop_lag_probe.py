"""A node started with ``SWARMGET_LOOP_LAG_PROBE`` reports its event loop's lag on /metrics;
without it, it does not; with a bad value it refuses to start and says why."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from swarmget.net.looplag import ENV_VAR
from swarmget.testing.swarm import open_local_swarm

pytestmark = pytest.mark.slow


async def _metrics(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def test_probe_on_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "0.01")
    async with open_local_swarm(tmp_path, 1) as swarm:
        text = await _metrics(swarm.node(0).api_url)
    assert "swarmget_event_loop_lag_seconds_bucket" in text
    assert "swarmget_event_loop_lag_max_seconds" in text


async def test_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    async with open_local_swarm(tmp_path, 1) as swarm:
        text = await _metrics(swarm.node(0).api_url)
    assert "swarmget_event_loop_lag" not in text


async def test_bad_value_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "often")
    with pytest.raises(RuntimeError, match=ENV_VAR):
        async with open_local_swarm(tmp_path, 1):
            pass
