"""Reading a peer's or the hub's answer without letting it decide how much memory we spend."""

from __future__ import annotations

import aiohttp

__all__ = ["read_bounded"]


async def read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body, or None as soon as it turns out longer than ``limit`` bytes."""
    data = bytearray()
    while chunk := await content.read(limit + 1 - len(data)):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)
