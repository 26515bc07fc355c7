"""The outgoing-connection guard on real sockets (aiohttp servers on 127.0.0.x and ::1)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.errors import ForbiddenTarget, OriginUnusable, UsageError
from swarmget.net.guard import (
    ForbiddenConnection,
    GuardedResolver,
    forbidden_target,
    make_guarded_connector,
    open_guarded_session,
)
from swarmget.net.origin import OriginClient

BODY = b"x" * 1000
DEFAULT = AddressPolicy()
LOOPBACK_OK = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))
TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass
class Server:
    """A tiny origin: serves BODY, or redirects to ``redirect_to``; records who asked."""

    host: str
    port: int = 0
    redirect_to: str | None = None
    remotes: list[str | None] = field(default_factory=list)

    def url(self, host: str | None = None) -> str:
        host = host or self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.remotes.append(request.remote)
        if self.redirect_to is not None:
            raise web.HTTPFound(self.redirect_to)
        return web.Response(body=BODY, headers={"Accept-Ranges": "bytes", "ETag": '"v1"'})


@asynccontextmanager
async def serve(host: str, port: int = 0) -> AsyncIterator[Server]:
    server = Server(host)
    app = web.Application()
    app.router.add_route("*", "/", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        server.port = runner.addresses[0][1]
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def target() -> AsyncIterator[Server]:
    async with serve("127.0.0.1") as server:
        yield server


@pytest.fixture
async def redirector() -> AsyncIterator[Server]:
    async with serve("127.0.0.2") as server:
        yield server


@pytest.fixture
async def target_v6() -> AsyncIterator[Server]:
    try:
        async with serve("::1") as server:
            yield server
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")


async def _fetch(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url, timeout=TIMEOUT) as resp:
        resp.raise_for_status()
        return await resp.read()


async def _refused(policy: AddressPolicy, url: str) -> ForbiddenTarget:
    """Fetch ``url`` on a guarded session and return the guard's refusal (or fail)."""
    async with open_guarded_session(policy) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await _fetch(session, url)
    refusal = forbidden_target(info.value, f"GET {url}")
    assert refusal is not None, f"not refused by the guard: {info.value!r}"
    assert isinstance(info.value.os_error, ForbiddenConnection)
    return refusal


# --- refused ------------------------------------------------------------------------------------

REFUSED_SPELLINGS = [
    ("127.0.0.1", "127.0.0.1: loopback address"),
    ("localhost", "loopback address"),  # resolves to 127.0.0.1 (and ::1)
    ("0x7f.1", "127.0.0.1: loopback address"),  # hex: resolved by getaddrinfo
    ("0x7f000001", "127.0.0.1: loopback address"),
    ("::ffff:127.0.0.1", "IPv4-mapped IPv6 address of 127.0.0.1, a loopback address"),
]


@pytest.mark.parametrize(("host", "why"), REFUSED_SPELLINGS)
async def test_default_policy_refuses_loopback_in_any_spelling(
    target: Server, host: str, why: str
) -> None:
    refusal = await _refused(DEFAULT, target.url(host))
    assert why in str(refusal)
    assert target.remotes == []


@pytest.mark.parametrize(
    "host", ["2130706433", "017700000001", "0177.0.0.1", "127.1", "127.0.0.1."]
)
async def test_legacy_numeric_ipv4_is_refused_by_aiohttp_before_connecting(
    target: Server, host: str
) -> None:
    # yarl keeps these hosts as written; aiohttp >= 3.13 refuses non-canonical IPv4 literals
    # (InvalidURL) rather than let getaddrinfo() turn them into 127.0.0.1. Even with the
    # loopback allow-list: the spelling itself is refused, and never fetched.
    for policy in (DEFAULT, LOOPBACK_OK):
        async with open_guarded_session(policy) as session:
            with pytest.raises(aiohttp.InvalidURL, match="not a canonical IPv4 address"):
                await _fetch(session, target.url(host))
    assert target.remotes == []


async def test_legacy_numeric_ipv4_is_origin_unusable_for_the_origin_client(
    target: Server,
) -> None:
    async with open_guarded_session(DEFAULT) as session:
        with pytest.raises(OriginUnusable, match="not a canonical IPv4 address"):
            await OriginClient(session).probe(target.url("2130706433"))
    assert target.remotes == []


async def test_ipv6_loopback_is_refused(target_v6: Server) -> None:
    refusal = await _refused(DEFAULT, target_v6.url())
    assert "::1: loopback address" in str(refusal)
    assert target_v6.remotes == []


async def test_metadata_address_is_refused_at_once_not_timed_out() -> None:
    started = time.monotonic()
    refusal = await _refused(DEFAULT, "http://169.254.169.254/latest/meta-data/")
    assert "169.254.169.254: link-local address" in str(refusal)
    assert time.monotonic() - started < 1.0  # no connect attempt, so no wait for one


async def test_socket_factory_refuses_before_a_socket_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: list[socket.socket] = []
    real_socket = socket.socket

    def spy(*args: object, **kwargs: object) -> socket.socket:
        sock = real_socket(*args, **kwargs)  # type: ignore[arg-type]
        created.append(sock)
        return sock

    monkeypatch.setattr(socket, "socket", spy)
    await _refused(DEFAULT, "http://169.254.169.254/")
    assert created == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_redirect_to_a_forbidden_address_is_refused(
    redirector: Server, target: Server, host: str
) -> None:
    redirector.redirect_to = target.url(host)
    policy = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.2/32"))
    refusal = await _refused(policy, redirector.url())
    assert "loopback address" in str(refusal)
    assert len(redirector.remotes) == 1
    assert target.remotes == []


# --- allowed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0x7f.1"])
async def test_allow_list_lets_the_same_requests_through(target: Server, host: str) -> None:
    async with open_guarded_session(LOOPBACK_OK) as session:
        assert await _fetch(session, target.url(host)) == BODY
    assert target.remotes == ["127.0.0.1"]


async def test_allow_list_lets_the_redirect_through(redirector: Server, target: Server) -> None:
    redirector.redirect_to = target.url()
    async with open_guarded_session(LOOPBACK_OK) as session:
        assert await _fetch(session, redirector.url()) == BODY
    assert len(redirector.remotes) == len(target.remotes) == 1


@pytest.mark.parametrize("source", ["127.0.0.3", "127.0.0.4"])
async def test_local_addr_sets_the_source_address(target: Server, source: str) -> None:
    async with open_guarded_session(LOOPBACK_OK, local_addr=source) as session:
        assert await _fetch(session, target.url()) == BODY
    assert target.remotes == [source]


async def test_local_addr_still_guards(target: Server) -> None:
    async with open_guarded_session(DEFAULT, local_addr="127.0.0.3") as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await _fetch(session, target.url())
    assert forbidden_target(info.value, "GET") is not None
    assert target.remotes == []


# --- the resolver filter ------------------------------------------------------------------------


@dataclass
class FakeResolver(AbstractResolver):
    """Resolves every name to ``addresses`` (in order)."""

    addresses: list[str]
    closed: bool = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [_result(host, a, port) for a in self.addresses]

    async def close(self) -> None:
        self.closed = True


def _result(name: str, address: str, port: int) -> ResolveResult:
    v6 = ipaddress.ip_address(address).version == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    return {
        "hostname": name,
        "host": address,
        "port": port,
        "family": family,
        "proto": 0,
        "flags": 0,
    }


async def test_resolver_keeps_only_allowed_addresses() -> None:
    inner = FakeResolver(["10.0.0.1", "8.8.8.8", "::1", "2606:4700::1111"])
    results = await GuardedResolver(DEFAULT, inner).resolve("mixed.example", 80)
    assert [r["host"] for r in results] == ["8.8.8.8", "2606:4700::1111"]


async def test_resolver_with_nothing_allowed_refuses_with_the_first_reason() -> None:
    resolver = GuardedResolver(DEFAULT, FakeResolver(["10.0.0.1", "::1"]))
    with pytest.raises(ForbiddenConnection, match=r"10\.0\.0\.1: private address") as info:
        await resolver.resolve("lan.example", 80)
    assert isinstance(info.value.target, ForbiddenTarget)
    await resolver.close()
    assert isinstance(resolver._inner, FakeResolver)
    assert resolver._inner.closed


async def test_mixed_name_connects_only_to_the_allowed_address(target: Server) -> None:
    # "both.test" resolves to 127.0.0.1 first, then 127.0.0.2, and both listen on the same
    # port; only 127.0.0.2 is allowed, so the request must land there.
    policy = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.2/32"))
    resolver = FakeResolver(["127.0.0.1", "127.0.0.2"])
    async with serve("127.0.0.2", target.port) as allowed:
        connector = make_guarded_connector(policy, resolver=resolver)
        async with aiohttp.ClientSession(connector=connector) as session:
            assert await _fetch(session, f"http://both.test:{target.port}/") == BODY
    assert len(allowed.remotes) == 1  # (remotes are the client's source addresses)
    assert target.remotes == []


# --- misuse ---------------------------------------------------------------------------------------


async def test_session_refuses_environment_proxies() -> None:
    with pytest.raises(ValueError, match="proxies"):
        async with open_guarded_session(DEFAULT, trust_env=True):
            pass


async def test_local_addr_must_be_an_ip_address() -> None:
    with pytest.raises(UsageError, match="'localhost'"):
        make_guarded_connector(DEFAULT, local_addr="localhost")


async def test_socket_factory_cannot_be_replaced() -> None:
    with pytest.raises(TypeError, match="socket_factory"):
        make_guarded_connector(DEFAULT, socket_factory=lambda _: socket.socket())


async def test_bad_session_arguments_do_not_leak_the_connector() -> None:
    # filterwarnings=error turns an "Unclosed connector" ResourceWarning into a failure.
    with pytest.raises(TypeError):
        async with open_guarded_session(DEFAULT, no_such_argument=1):
            pass
    await asyncio.sleep(0)


def test_forbidden_target_ignores_other_errors() -> None:
    assert forbidden_target(ConnectionRefusedError(111, "refused"), "GET x") is None
    assert forbidden_target(TimeoutError(), "GET x") is None


# --- through the origin client ------------------------------------------------------------------


async def test_origin_client_probes_an_allowed_origin(target: Server) -> None:
    async with open_guarded_session(LOOPBACK_OK) as session:
        info = await OriginClient(session).probe(target.url())
    assert info.size == len(BODY)


async def _probe_refusal(policy: AddressPolicy, url: str) -> ForbiddenTarget:
    async with open_guarded_session(policy) as session:
        with pytest.raises(ForbiddenTarget) as info:
            await OriginClient(session, connect_timeout=2).probe(url)
    return info.value


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::ffff:127.0.0.1"])
async def test_origin_client_raises_forbidden_target(target: Server, host: str) -> None:
    error = await _probe_refusal(DEFAULT, target.url(host))
    assert str(error).startswith(f"HEAD {target.url(host)}: refusing to connect to ")
    assert error.code == "forbidden_target"
    assert target.remotes == []


async def test_origin_client_refuses_the_metadata_address() -> None:
    error = await _probe_refusal(DEFAULT, "http://169.254.169.254/latest/meta-data/")
    assert "169.254.169.254: link-local address" in str(error)


async def test_origin_client_refuses_a_redirect_to_loopback(
    redirector: Server, target: Server
) -> None:
    redirector.redirect_to = target.url()
    policy = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.2/32"))
    error = await _probe_refusal(policy, redirector.url())
    assert f"HEAD {target.url()}: refusing to connect to 127.0.0.1" in str(error)
    assert len(redirector.remotes) == 1
    assert target.remotes == []
