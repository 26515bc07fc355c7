"""The relay API's errors through one table: the relay answers by ``RELAY_ERRORS``, the
requester's ``RelayClient`` reads the code back into the exception the table names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from swarmget.core import errors as e
from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.net.relay_client import RelayClient
from swarmget.protocol.errors import RELAY_ERRORS, WireError, relay_fetch_error
from swarmget.protocol.relay import FETCH_PATH, FetchAnswer, FetchError
from swarmget.relay.app import refusal
from swarmget.relay.run import RelayConfig, open_relay
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import TestOrigin, open_test_origin

SECRET = b"r" * 32
ME = identity_for("requester")
LOOPBACK = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))
AUTH_CODES = {e.AuthError, e.BadIdentity, e.ClockSkew, e.ReplayedRequest, e.ReplayCacheFull}


# --- the table ------------------------------------------------------------------------------


def test_every_relay_code_is_listed_once() -> None:
    codes = [row.code for row in RELAY_ERRORS.rows]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("row", RELAY_ERRORS.rows, ids=lambda row: row.code)
def test_each_relay_row_is_found_from_both_sides(row: WireError) -> None:
    assert RELAY_ERRORS.row(row.code) is row
    assert RELAY_ERRORS.for_code(row.code, row.status) is row.raised
    if row.answers is not None:
        assert RELAY_ERRORS.for_exception(row.answers("m")) is row


def test_the_signature_middleware_codes_are_the_tree_codes_with_its_statuses() -> None:
    """The 401s and the 429 come from ``net.auth``'s middleware, which answers an
    ``AuthError`` with its tree code: the table must list each with that status."""
    for kind in AUTH_CODES:
        status = 429 if kind is e.ReplayCacheFull else 401
        assert RELAY_ERRORS.row(kind.code).status == status


def test_an_error_no_row_names_is_a_bad_request() -> None:
    assert RELAY_ERRORS.for_exception(ValueError("odd")) is RELAY_ERRORS.default
    assert RELAY_ERRORS.default.code == "bad_request"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, e.RelayRejected), (403, e.RelayRejected), (404, e.RelayRejected)]
    + [(429, e.RelayUnavailable), (500, e.RelayUnavailable), (503, e.RelayUnavailable)],
)
def test_an_unknown_relay_code_is_judged_by_status(
    status: int, expected: type[e.SwarmgetError]
) -> None:
    assert RELAY_ERRORS.for_code("from_a_newer_relay", status) is expected
    assert RELAY_ERRORS.for_code(None, status) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (e.ForbiddenTarget.code, e.ForbiddenTarget),
        (e.OriginUnusable.code, e.OriginUnusable),
        (e.InsufficientStorage.code, e.OriginUnusable),
        (e.OriginChanged.code, e.OriginUnusable),
        ("no_such_code", e.OriginUnusable),
        (None, e.OriginUnusable),
    ],
)
def test_a_failed_fetch_is_an_origin_the_relay_cannot_use(
    code: object, expected: type[e.SwarmgetError]
) -> None:
    made = relay_fetch_error(code, "m")
    assert type(made) is expected
    assert str(made) == "m"


# --- over the wire: what the relay answers, read by the client -------------------------------


@pytest.fixture
async def stand_in() -> AsyncIterator[str]:
    """``POST /CODE/v1/fetch`` answers CODE's row as the relay does (``refusal``);
    ``/raw/STATUS/v1/fetch`` answers STATUS with a body that is not ours; ``/failed/CODE``
    answers a failed fetch with that error-tree code."""

    async def by_code(request: web.Request) -> web.Response:
        return refusal(request.match_info["code"], "refused", headers={"Retry-After": "3"})

    async def raw(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["status"]), text="<html>proxy</html>")

    async def failed(request: web.Request) -> web.Response:
        error = FetchError(code=request.match_info["code"], message="it went wrong")
        answer = FetchAnswer(id="0" * 16, url="https://example.test/f", state="failed", error=error)
        return web.json_response(answer.as_json())

    app = web.Application()
    app.router.add_post("/raw/{status}" + FETCH_PATH, raw)
    app.router.add_post("/failed/{code}" + FETCH_PATH, failed)
    app.router.add_post("/{code}" + FETCH_PATH, by_code)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def _client_raises(relay_url: str, url: str = "https://example.test/f") -> BaseException:
    async with aiohttp.ClientSession() as session:
        client = RelayClient(session, relay_url, SECRET, ME)
        with pytest.raises(e.SwarmgetError) as caught:
            await client.fetch(url, max_polls=1)
    return caught.value


@pytest.mark.parametrize("row", RELAY_ERRORS.rows, ids=lambda row: row.code)
async def test_each_relay_error_round_trips(stand_in: str, row: WireError) -> None:
    raised = await _client_raises(f"{stand_in}/{row.code}")
    assert type(raised) is row.raised
    if isinstance(raised, e.SourceRateLimited):
        assert raised.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, e.RelayRejected), (401, e.RelayRejected), (502, e.RelayUnavailable)],
)
async def test_an_answer_without_our_code_is_judged_by_status(
    stand_in: str, status: int, expected: type[e.SwarmgetError]
) -> None:
    assert type(await _client_raises(f"{stand_in}/raw/{status}")) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [(e.ForbiddenTarget.code, e.ForbiddenTarget), (e.InsufficientStorage.code, e.OriginUnusable)],
)
async def test_a_failed_fetch_is_read_by_its_code(
    stand_in: str, code: str, expected: type[e.SwarmgetError]
) -> None:
    raised = await _client_raises(f"{stand_in}/failed/{code}")
    assert type(raised) is expected
    assert "it went wrong" in str(raised)


async def test_an_unreachable_relay_is_unavailable() -> None:
    async with aiohttp.ClientSession() as session:  # port 9 on loopback: nothing listens
        client = RelayClient(session, "http://127.0.0.1:9", SECRET, ME)
        with pytest.raises(e.RelayUnavailable):
            await client.fetch("https://example.test/f", max_polls=1)


# --- the real relay --------------------------------------------------------------------------


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("a.bin", 1000, seed=1)
        yield o


def _config(tmp_path: Path, policy: AddressPolicy) -> RelayConfig:
    return RelayConfig(
        secret=SECRET, cache_dir=tmp_path / "cache", budget=1 << 20, origin_policy=policy
    )


async def test_the_relay_refuses_a_bad_url_and_the_client_says_so(tmp_path: Path) -> None:
    async with open_relay(_config(tmp_path, LOOPBACK)) as relay:
        raised = await _client_raises(relay.url, "ftp://example.test/f")
    assert type(raised) is e.InvalidURL


async def test_the_relay_refuses_another_swarm_and_the_client_says_so(
    tmp_path: Path, origin: TestOrigin
) -> None:
    async with (
        open_relay(_config(tmp_path, LOOPBACK)) as relay,
        aiohttp.ClientSession() as session,
    ):
        client = RelayClient(session, relay.url, b"w" * 32, ME)
        with pytest.raises(e.RelayRejected, match="401"):
            await client.fetch(origin.url("a.bin"), max_polls=1)


async def test_a_fetch_the_policy_forbids_is_a_forbidden_target(
    tmp_path: Path, origin: TestOrigin
) -> None:
    async with open_relay(_config(tmp_path, AddressPolicy())) as relay:  # loopback forbidden
        async with aiohttp.ClientSession() as session:
            client = RelayClient(session, relay.url, SECRET, ME)
            with pytest.raises(e.ForbiddenTarget):
                await client.fetch(origin.url("a.bin"), max_polls=20)
