"""The event-loop lag probe: its switch (an environment variable, checked) and its figures."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from swarmget.core.errors import UsageError
from swarmget.net.looplag import ENV_VAR, LoopLagProbe, interval_from_env


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
