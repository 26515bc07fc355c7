"""Serving until told to stop: every long-running swarmget process (``swarmget node``,
``hub``, ``relay``, the test origin as a process) opens its server, says once that it
listens, and serves until SIGTERM or SIGINT, then closes it cleanly.

``serve_until_signalled(server, ready)`` is that, for a server that is an async context
manager; ``announce_listening(info)`` is how they say it: one JSON line on stdout (tests,
the demo and process supervisors read it).

The signal handlers are installed before the server opens, so a signal that comes while it
starts stops it as soon as it is up (its cleanup runs) rather than killing the
process half-way; they are removed when it returns. Outside the main thread (where the loop
cannot handle signals) it serves until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

__all__ = ["STOP_SIGNALS", "announce_listening", "serve_until_signalled", "stop_on_signals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
T = TypeVar("T")
log = logging.getLogger(__name__)


@contextlib.contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[asyncio.Event]:
    """An event set when the process gets one of ``signals`` while inside (in the main
    thread: elsewhere the loop cannot install handlers, and the event is never set)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def received(sig: signal.Signals) -> None:
        log.info("received %s: stopping", sig.name)
        stop.set()

    for sig in signals:
        try:
            loop.add_signal_handler(sig, received, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not main thread / Windows
            continue
        installed.append(sig)
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve_until_signalled(
    server: AbstractAsyncContextManager[T], ready: Callable[[T], None]
) -> None:
    """Open ``server``, call ``ready(it)`` once it is open (to announce its URL), and keep
    it open until SIGTERM/SIGINT or until cancelled; then close it."""
    with stop_on_signals() as stop:
        async with server as running:
            ready(running)
            await stop.wait()


def announce_listening(info: dict[str, Any]) -> None:
    """Say on stdout, as one JSON line, that a server listens (and where)."""
    print(json.dumps(info), flush=True)
