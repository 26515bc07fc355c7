"""A server that accepts connections and never answers, for tests of what waits on one.

``open_silent_server()`` yields its ``http://`` base URL: a hub (or any peer) whose every
request hangs until the client's own timeout, as a hung process with a live kernel does.
It counts the requests whose first line arrived (``SilentServer.asked``), and closes what
it holds on exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

__all__ = ["SilentServer", "open_silent_server"]


@dataclass
class SilentServer:
    url: str = ""
    #: set once a request's first line arrived
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    _held: list[asyncio.StreamWriter] = field(default_factory=list)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.append(writer)  # the connection stays open, unanswered
        if await reader.readline():
            self.asked.set()
        await reader.read(65536)


@asynccontextmanager
async def open_silent_server(host: str = "127.0.0.1") -> AsyncIterator[SilentServer]:
    silent = SilentServer()
    server = await asyncio.start_server(silent._hold, host, 0)
    silent.url = f"http://{host}:{server.sockets[0].getsockname()[1]}"
    try:
        yield silent
    finally:
        for writer in silent._held:
            writer.close()
        server.close()
        await server.wait_closed()
