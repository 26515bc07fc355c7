"""A listener that runs out of file descriptors: ``open_listener`` in a real process with a
small ``RLIMIT_NOFILE`` and connection limits above it, flooded with connections from this
one. asyncio pauses accepting and reports every failed ``accept()``; the server logs one
short line (no traceback per attempt) and serves again once descriptors are free."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from swarmget.net import serve
from swarmget.net.serve import ListenLimits, open_listener

NOFILE = 64
PATIENCE = 15.0
CONNECT_PATIENCE = 3.0  # a SYN the full accept queue dropped is sent again after 1 s
MAX_PAUSE_LINES = 8  # the test runs for a few seconds: one line per second of pause

SERVER = """
import asyncio, sys
from aiohttp import web
from swarmget.net.serve import ListenLimits, open_listener

async def health(request):
    return web.Response(text="ok")

async def main():
    app = web.Application()
    app.router.add_get("/health", health)
    limits = ListenLimits(per_address=10_000, max_connections=10_000, head_timeout=60)
    async with open_listener(app, "127.0.0.1", 0, limits=limits, shutdown_timeout=1) as bound:
        print(bound.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


async def _health(port: int) -> int:
    async with (
        aiohttp.ClientSession() as session,
        asyncio.timeout(5.0),
        session.get(f"http://127.0.0.1:{port}/health") as resp,
    ):
        return resp.status


async def test_running_out_of_descriptors_logs_one_line_and_recovers(tmp_path: Path) -> None:
    def limit_files() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))

    log = tmp_path / "server.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SERVER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            preexec_fn=limit_files,
        )
    assert process.stdout is not None
    assert process.stdin is not None
    writers: list[asyncio.StreamWriter] = []
    try:
        async with asyncio.timeout(PATIENCE):
            port = int(await process.stdout.readline())
        for i in range(NOFILE + 40):  # more than the server has descriptors
            if i % 8 == 0:
                await asyncio.sleep(0.05)  # let it accept: its accept queue is short
            try:  # once it pauses and its accept queue is full, a connect hangs
                async with asyncio.timeout(CONNECT_PATIENCE):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
            except TimeoutError:
                break
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # a half-sent head
            writers.append(writer)
        assert len(writers) >= NOFILE // 2  # it accepted until it ran out
        await asyncio.sleep(0.5)
        for writer in writers:
            writer.close()
        writers.clear()
        async with asyncio.timeout(PATIENCE):
            while True:  # asyncio accepts again a second after it ran out
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    if await _health(port) == 200:
                        break
                await asyncio.sleep(0.2)
        process.stdin.close()
        async with asyncio.timeout(PATIENCE):
            await process.wait()
    finally:
        for writer in writers:
            writer.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    out_of = [line for line in text.splitlines() if "not accepting connections" in line]
    assert 1 <= len(out_of) <= MAX_PAUSE_LINES, text  # one per pause, not one per accept()


def test_the_backlog_fits_the_descriptors_left_over() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no limit on open files here")
    assert serve._backlog(soft // 2) == max(8, min(serve.MAX_BACKLOG, (soft - soft // 2) // 4))
    assert serve._backlog(soft) == 8  # no room left: the smallest batch
    assert serve._backlog(0) <= serve.MAX_BACKLOG


async def test_other_loop_reports_go_to_the_handler_that_was_there() -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        async with open_listener(web_app(), "127.0.0.1", 0, limits=ListenLimits()):
            other = {"message": "something else", "exception": OSError(errno.EMFILE, "x")}
            loop.call_exception_handler(other)  # not about one of our sockets
            assert seen == [other]
        loop.call_exception_handler({"message": "after"})
        assert seen[-1] == {"message": "after"}  # the old handler is back
    finally:
        loop.set_exception_handler(None)


def web_app() -> web.Application:
    return web.Application()


async def test_a_report_about_our_socket_is_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    async with open_listener(web_app(), "127.0.0.1", 0, limits=ListenLimits()):
        owner = getattr(loop.get_exception_handler(), "__self__", None)
        assert isinstance(owner, serve._AcceptErrors)
        (fd,) = owner._guards  # our one listening socket
        with caplog.at_level(logging.WARNING, logger="swarmget.http"):
            for _ in range(5):  # asyncio reports each failed accept() of one batch
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                        "socket": _FakeSocket(fd),
                    }
                )
    lines = [r for r in caplog.records if r.name == "swarmget.http"]
    assert len(lines) == 1
    assert "too many open files" in lines[0].getMessage()
    assert lines[0].exc_info is None


class _FakeSocket:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd
