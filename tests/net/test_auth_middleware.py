"""The auth middleware on a real aiohttp server on 127.0.0.1, and secret loading."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.auth import HEADER_SIGNATURE, HEADER_TIME
from swarmget.core.errors import InvalidSecret
from swarmget.net.auth import (
    auth_middleware,
    authenticated_node,
    load_secret,
    signed_headers,
)
from swarmget.testing.fakes import identity_for, nid

SECRET = b"0123456789abcdef-test-secret"
NOW = 1_700_000_000.0


@dataclass
class Server:
    url: str
    now: float = NOW

    def clock(self) -> float:
        return self.now


async def _whoami(request: web.Request) -> web.Response:
    body = await request.read()  # the middleware already read it: still available
    return web.json_response(
        {"node": authenticated_node(request), "body": body.decode(), "path": request.path}
    )


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(url="")
    middleware = auth_middleware(
        SECRET, exempt=frozenset({"/health"}), clock=state.clock, max_body=1024
    )
    app = web.Application(middlewares=[middleware])
    app.router.add_route("*", "/whoami", _whoami)
    app.router.add_route("*", "/files/{name}", _whoami)
    app.router.add_get("/health", _health)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        state.url = f"http://{host}:{port}"
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _signed(url: str, method: str = "GET", body: bytes = b"") -> dict[str, str]:
    return signed_headers(SECRET, identity_for("node-a"), method, url, body, now=NOW)


async def _status_and_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes = b"",
) -> tuple[int, dict[str, object]]:
    async with session.request(method, url, headers=headers, data=body or None) as resp:
        return resp.status, await resp.json()


async def test_good_signature_passes_and_names_the_node(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url = server.url + "/whoami"
    status, answer = await _status_and_json(session, "GET", url, _signed(url))
    assert (status, answer["node"]) == (200, nid("node-a"))


async def test_signed_body_and_query_pass_and_body_stays_readable(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url = server.url + "/whoami?b=2&a=%2F"
    body = b'{"hello": "world"}'
    status, answer = await _status_and_json(session, "POST", url, _signed(url, "POST", body), body)
    assert status == 200
    assert answer["body"] == body.decode()


async def test_encoded_path_is_signed_as_sent(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url = server.url + "/files/a b%2Fc"
    status, answer = await _status_and_json(session, "GET", url, _signed(url))
    assert (status, answer["path"]) == (200, "/files/a b/c")


async def test_no_headers_is_401(server: Server, session: aiohttp.ClientSession) -> None:
    async with session.get(server.url + "/whoami") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Swarm-HMAC-SHA256")
        answer = await resp.json()
    assert answer["code"] == "auth"
    assert "unsigned request" in answer["error"]


async def test_bad_signature_is_401(server: Server, session: aiohttp.ClientSession) -> None:
    url = server.url + "/whoami"
    headers = _signed(url) | {HEADER_SIGNATURE: "0" * 64}
    status, answer = await _status_and_json(session, "GET", url, headers)
    assert (status, answer["code"]) == (401, "auth")
    assert "bad signature" in str(answer["error"])


async def test_signature_for_another_path_is_401(
    server: Server, session: aiohttp.ClientSession
) -> None:
    headers = _signed(server.url + "/files/x")
    status, _ = await _status_and_json(session, "GET", server.url + "/files/y", headers)
    assert status == 401


async def test_altered_body_is_401(server: Server, session: aiohttp.ClientSession) -> None:
    url = server.url + "/whoami"
    headers = _signed(url, "POST", b"original")
    status, _ = await _status_and_json(session, "POST", url, headers, b"altered!")
    assert status == 401


async def test_replay_is_401(server: Server, session: aiohttp.ClientSession) -> None:
    url = server.url + "/whoami"
    headers = _signed(url)
    first, _ = await _status_and_json(session, "GET", url, headers)
    second, answer = await _status_and_json(session, "GET", url, headers)
    assert (first, second) == (200, 401)
    assert "replayed" in str(answer["error"])


async def test_clock_skew_is_401_and_says_so(
    server: Server, session: aiohttp.ClientSession
) -> None:
    server.now = NOW + 120
    url = server.url + "/whoami"
    status, answer = await _status_and_json(session, "GET", url, _signed(url))
    assert status == 401
    assert "clock skew" in str(answer["error"])
    assert "120 s behind" in str(answer["error"])


async def test_time_header_cannot_be_moved(server: Server, session: aiohttp.ClientSession) -> None:
    server.now = NOW + 120
    url = server.url + "/whoami"
    headers = _signed(url) | {HEADER_TIME: str(int(NOW + 120))}
    status, _ = await _status_and_json(session, "GET", url, headers)
    assert status == 401


async def test_exempt_path_needs_no_signature(
    server: Server, session: aiohttp.ClientSession
) -> None:
    status, answer = await _status_and_json(session, "GET", server.url + "/health", {})
    assert (status, answer) == (200, {"ok": True})


async def test_body_over_the_limit_is_413(server: Server, session: aiohttp.ClientSession) -> None:
    url = server.url + "/whoami"
    body = b"x" * 2048
    status, answer = await _status_and_json(session, "POST", url, _signed(url, "POST", body), body)
    assert (status, answer["code"]) == (413, "too_large")


# --- load_secret ---------------------------------------------------------------------------------


def test_load_secret_from_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"0123456789abcdef0123\n")
    assert load_secret(path) == b"0123456789abcdef0123"


def test_load_secret_file_wins_over_environment(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"from-the-file-0123456")
    assert load_secret(path, env_value="from-the-environment") == b"from-the-file-0123456"


def test_load_secret_from_environment() -> None:
    assert load_secret(env_value=" from-the-environment ") == b"from-the-environment"


def test_load_secret_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidSecret, match="cannot read the swarm secret file"):
        load_secret(tmp_path / "nope")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_load_secret_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"0123456789abcdef0123")
    path.chmod(0)
    with pytest.raises(InvalidSecret, match="Permission denied"):
        load_secret(path)


@pytest.mark.parametrize(("content", "message"), [(b"\n", "empty"), (b"short\n", "too short")])
def test_load_secret_weak_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    with pytest.raises(InvalidSecret, match=message):
        load_secret(path)


def test_load_secret_none_given() -> None:
    with pytest.raises(InvalidSecret, match="no swarm secret given"):
        load_secret()


def test_load_secret_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InvalidSecret, match="cannot read the swarm secret file .*directory"):
        load_secret(tmp_path)
