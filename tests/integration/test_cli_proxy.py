"""``swarmget get --proxy`` (issue #16: proxy variables are ignored on purpose; an explicit
``--proxy`` instead): a download run here goes through the given HTTP proxy, every request
of it; proxy environment variables are never used; a malformed proxy, or a download that
goes to the node, the swarm or a relay (they fetch the origin themselves), is refused with
why. Real processes: the CLI, a test origin and a small forward proxy on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from swarmget.testing.cli import run_cli
from swarmget.testing.origin import TestOrigin, open_test_origin

MiB = 1024 * 1024


class ForwardProxy:
    """An HTTP/1.1 forward proxy for plain http:// (absolute-form request targets): each
    request goes to its origin on a new connection, ``Connection: close`` both ways; the
    targets it was asked for are kept in ``seen``."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                self.seen.append(target)
                url = urlsplit(target)
                fields = [
                    line
                    for line in head.decode().split("\r\n")[1:]
                    if line and not line.lower().startswith(("connection:", "proxy-"))
                ]
                path = url.path + (f"?{url.query}" if url.query else "")
                up_r, up_w = await asyncio.open_connection(url.hostname, url.port or 80)
                request = f"{method} {path} HTTP/1.1\r\n" + "\r\n".join(fields)
                up_w.write(request.encode() + b"\r\nConnection: close\r\n\r\n")
                await up_w.drain()
                while chunk := await up_r.read(256 * 1024):
                    writer.write(chunk)
                    await writer.drain()
                up_w.close()
                break  # the upstream closed: so do we (the client sees the end)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 3 * MiB, seed=9)
        yield o


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    p = ForwardProxy()
    server = await asyncio.start_server(p.handle, "127.0.0.1", 0)
    p.port = server.sockets[0].getsockname()[1]
    async with server:
        yield p


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp_path / "no-state"), **extra}


async def test_every_request_goes_through_the_given_proxy(
    origin: TestOrigin, proxy: ForwardProxy, tmp_path: Path
) -> None:
    url = origin.url("f.bin")
    rc, _, err = await run_cli(
        "get", url, "-o", "f.bin", "-q", "--no-node", "--proxy", f"http://127.0.0.1:{proxy.port}",
        cwd=tmp_path, env=_env(tmp_path),
    )  # fmt: skip
    assert rc == 0, err
    body = (tmp_path / "f.bin").read_bytes()
    assert hashlib.sha256(body).hexdigest() == origin.expected_sha256("f.bin")
    assert len(proxy.seen) >= 2  # the probe and the ranges
    assert all(target == url for target in proxy.seen)


async def test_proxy_variables_are_ignored(
    origin: TestOrigin, proxy: ForwardProxy, tmp_path: Path
) -> None:
    via = f"http://127.0.0.1:{proxy.port}"
    env = _env(tmp_path, http_proxy=via, HTTP_PROXY=via, all_proxy=via, NO_PROXY="")
    rc, _, err = await run_cli(
        "get", origin.url("f.bin"), "-o", "g.bin", "-q", "--no-node", cwd=tmp_path, env=env
    )
    assert rc == 0, err
    assert proxy.seen == []


@pytest.mark.parametrize(
    "given",
    ["ftp://127.0.0.1:3128", "127.0.0.1:3128", "http://:3128", "http://h:99999", "http://h/p"],
)
async def test_a_malformed_proxy_is_refused(given: str, tmp_path: Path) -> None:
    rc, _, err = await run_cli(
        "get", "http://127.0.0.1:9/f.bin", "-o", "f.bin", "--no-node", "--proxy", given,
        cwd=tmp_path, env=_env(tmp_path),
    )  # fmt: skip
    assert rc == 2, err
    assert "--proxy must look like http://host:port" in err


async def test_a_proxy_with_the_swarm_is_refused_with_why(
    origin: TestOrigin, proxy: ForwardProxy, tmp_path: Path
) -> None:
    rc, _, err = await run_cli(
        "get", origin.url("f.bin"), "-o", "f.bin", "--hub", "http://127.0.0.1:9",
        "--proxy", f"http://127.0.0.1:{proxy.port}",
        cwd=tmp_path, env=_env(tmp_path, SWARMGET_SECRET="s" * 32),
    )  # fmt: skip
    assert rc == 2, err
    assert "--no-node" in err
    assert proxy.seen == []
