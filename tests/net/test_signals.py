"""``net.signals``: a server is served until SIGTERM/SIGINT, then closed; cancelled, closed too."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from swarmget.net.signals import announce_listening, serve_until_signalled, stop_on_signals


class FakeServer:
    def __init__(self) -> None:
        self.events: list[str] = []

    @asynccontextmanager
    async def open(self) -> AsyncIterator[str]:
        self.events.append("open")
        try:
            yield "http://127.0.0.1:1"
        finally:
            self.events.append("close")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_the_server_after_it_said_it_listens(sig: signal.Signals) -> None:
    server = FakeServer()

    def ready(url: str) -> None:
        server.events.append(f"ready {url}")
        signal.raise_signal(sig)  # handled by the loop: sets the stop event

    async with asyncio.timeout(10):
        await serve_until_signalled(server.open(), ready)
    assert server.events == ["open", "ready http://127.0.0.1:1", "close"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers removed


async def test_a_cancelled_server_is_closed() -> None:
    server = FakeServer()
    ready = asyncio.Event()
    task = asyncio.create_task(serve_until_signalled(server.open(), lambda _: ready.set()))
    async with asyncio.timeout(10):
        await ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.events == ["open", "close"]


def test_outside_the_main_thread_no_handler_is_installed() -> None:
    seen: list[bool] = []

    async def inside() -> None:
        with stop_on_signals() as stop:
            seen.append(stop.is_set())

    thread = threading.Thread(target=asyncio.run, args=(inside(),))
    thread.start()
    thread.join(10)
    assert seen == [False]


def test_listening_is_announced_as_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    announce_listening({"url": "http://127.0.0.1:7400", "pid": 1})
    assert capsys.readouterr().out.splitlines() == ['{"url": "http://127.0.0.1:7400", "pid": 1}']
