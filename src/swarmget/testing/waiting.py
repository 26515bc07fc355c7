"""Waiting in tests for something another task or process makes true, bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["until"]


async def until(what: Callable[[], bool], limit: float = 15.0, every: float = 0.02) -> None:
    """Wait (at most ``limit`` seconds, checking every ``every``) until ``what()`` holds;
    ``AssertionError`` if it does not by then."""
    for _ in range(max(1, int(limit / every))):
        if what():
            return
        await asyncio.sleep(every)
    if not what():
        raise AssertionError(f"not within {limit} s")
