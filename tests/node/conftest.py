"""Fixtures shared by the node tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for talking to a node's APIs over loopback, closed after the test."""
    async with aiohttp.ClientSession() as s:
        yield s
