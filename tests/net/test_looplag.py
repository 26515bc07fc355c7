"""The event-loop lag probe: its switch (an environment variable, checked), its figures, and
the stall log (where a stalled loop is)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from swarmget.core.errors import UsageError
from swarmget.hub.app import make_hub_app
from swarmget.net.looplag import (
    ENV_VAR,
    MAX_DUMPS_PER_STALL,
    STALL_ENV_VAR,
    LoopLagProbe,
    interval_from_env,
    probe_from_env,
)
from swarmget.testing.fakes import MemoryRegistryStore


def test_off_unless_asked() -> None:
    assert interval_from_env({}) is None
    assert interval_from_env({ENV_VAR: "  "}) is None


def test_interval_read() -> None:
    assert interval_from_env({ENV_VAR: "0.01"}) == 0.01


@pytest.mark.parametrize("text", ["fast", "0", "-1", "nan", "inf", "100"])
def test_bad_interval_is_a_clear_error(text: str) -> None:
    with pytest.raises(UsageError, match=ENV_VAR):
        interval_from_env({ENV_VAR: text})


def test_figures_on_metrics() -> None:
    probe = LoopLagProbe(0.01)
    for lag in (0.0005, 0.004, 0.004, 0.25, -0.001):  # a negative lag (clock step) counts 0
        probe.observe(lag)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(probe)
    text = generate_latest(registry).decode()
    assert 'swarmget_event_loop_lag_seconds_bucket{le="0.001"} 2.0' in text
    assert 'swarmget_event_loop_lag_seconds_bucket{le="0.005"} 4.0' in text
    assert 'swarmget_event_loop_lag_seconds_bucket{le="+Inf"} 5.0' in text
    assert "swarmget_event_loop_lag_max_seconds 0.25" in text


async def test_run_measures_how_late_the_loop_woke() -> None:
    """With a clock that jumps 0.3 s past each asked wake-up, every sample is a 0.3 s lag."""
    now = [100.0]
    probe = LoopLagProbe(0.001, clock=lambda: now[0])

    async def late() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
            now[0] += 0.001 + 0.3
            while probe.tally.count("") < _ + 1:
                await asyncio.sleep(0.001)

    task = asyncio.create_task(probe.run())
    try:
        await asyncio.wait_for(late(), 10)
    finally:
        task.cancel()
    assert probe.tally.count("") >= 3
    assert probe.max_lag == pytest.approx(0.3)


# --- the stall log: where a stalled loop is --------------------------------------------------


def test_probe_from_env() -> None:
    assert probe_from_env({}) is None
    probe = probe_from_env({ENV_VAR: "0.01"})
    assert probe is not None
    assert (probe.interval, probe.stall_log) == (0.01, None)
    # a stall log alone brings a probe at a quarter of its threshold
    probe = probe_from_env({STALL_ENV_VAR: "0.2"})
    assert probe is not None
    assert (probe.interval, probe.stall_log) == (0.05, 0.2)
    probe = probe_from_env({ENV_VAR: "0.01", STALL_ENV_VAR: "0.1"})
    assert probe is not None
    assert (probe.interval, probe.stall_log) == (0.01, 0.1)
    with pytest.raises(UsageError, match=STALL_ENV_VAR):
        probe_from_env({STALL_ENV_VAR: "soon"})


def _stuck_in_a_callback(seconds: float) -> None:
    time.sleep(seconds)  # what a loop that blocks looks like


async def test_a_stalled_loop_logs_where_it_is(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="swarmget.net.looplag")
    probe = LoopLagProbe(0.01, stall_log=0.05)
    task = asyncio.create_task(probe.run())
    try:
        await asyncio.sleep(0.1)  # the probe and its watch run
        assert not [r for r in caplog.records if "past due" in r.getMessage()]
        _stuck_in_a_callback(0.4)  # on the loop's thread: the loop stalls
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stacks = [r.getMessage() for r in caplog.records if "past due" in r.getMessage()]
    assert 1 <= len(stacks) <= MAX_DUMPS_PER_STALL  # a few per stall, not one per look
    assert all("_stuck_in_a_callback" in s for s in stacks)
    assert probe.max_lag >= 0.3


async def test_no_stall_no_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="swarmget.net.looplag")
    probe = LoopLagProbe(0.01, stall_log=0.2)
    task = asyncio.create_task(probe.run())
    try:
        for _ in range(20):
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not [r for r in caplog.records if "past due" in r.getMessage()]
    assert probe.tally.count("") > 5


async def test_a_hub_with_a_probe_shows_it_on_metrics() -> None:
    probe = LoopLagProbe(0.005)
    app = make_hub_app(MemoryRegistryStore(), b"s" * 32, lag_probe=probe)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        async with asyncio.timeout(10):
            while probe.tally.count("") < 3:
                await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{host}:{port}/metrics") as resp:
                text = await resp.text()
    finally:
        await runner.cleanup()
    assert "swarmget_event_loop_lag_seconds_count" in text
    assert "swarmget_event_loop_lag_max_seconds" in text
