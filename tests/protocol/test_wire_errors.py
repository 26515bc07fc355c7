"""The one error table: every code round-trips, unknown codes get a sensible default."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from swarmget.core import errors as e
from swarmget.core.http import Validator
from swarmget.core.ranges import ByteRange
from swarmget.net.origin import OriginInfo
from swarmget.net.peer_client import PeerAddress, PeerSource
from swarmget.node.helper import _origin_error
from swarmget.node.range_stream import Refusal, refused
from swarmget.protocol.errors import EXCEPTIONS, PEER_ERRORS, WireError, exception_for_code
from swarmget.testing.fakes import identity_for


def _tree(root: type[e.SwarmgetError]) -> list[type[e.SwarmgetError]]:
    return [root, *(kind for sub in root.__subclasses__() for kind in _tree(sub))]


def _raised_by_server(row: WireError) -> e.SwarmgetError:
    assert row.answers is not None
    if row.answers is e.SourceRateLimited:
        return e.SourceRateLimited("origin says wait", retry_after=2.5)
    return row.answers("what went wrong")


def test_every_code_of_the_tree_names_its_own_exception() -> None:
    tree = [kind for kind in _tree(e.SwarmgetError) if kind.__module__ == e.__name__]
    assert len({kind.code for kind in tree}) == len(tree)  # no code used twice
    for kind in tree:
        made = exception_for_code(kind.code, "m")
        assert type(made) is kind
        assert str(made) == "m"
    assert set(EXCEPTIONS) == {kind.code for kind in tree}


@pytest.mark.parametrize("code", ["no_such_code", "", None, 7, ["checksum_mismatch"]])
def test_an_unknown_code_is_a_download_error(code: object) -> None:
    made = exception_for_code(code, "odd")
    assert type(made) is e.DownloadError
    assert str(made) == "odd"


@pytest.mark.parametrize("row", PEER_ERRORS.rows, ids=lambda row: row.code)
def test_each_peer_row_is_found_from_both_sides(row: WireError) -> None:
    assert PEER_ERRORS.for_code(row.code, row.status) is row.raised
    assert PEER_ERRORS.row(row.code) is row
    if row.answers is not None:  # no earlier row shadows it
        assert PEER_ERRORS.for_exception(_raised_by_server(row)) is row


def test_an_error_no_row_names_is_the_default() -> None:
    assert PEER_ERRORS.for_exception(e.SourceRetryable("reset")) is PEER_ERRORS.default
    assert PEER_ERRORS.for_exception(e.StorageError("disk")) is PEER_ERRORS.default
    assert PEER_ERRORS.default.status == 504


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, e.SourceRateLimited),
        (503, e.SourceRateLimited),
        (504, e.SourceRetryable),
        (500, e.SourceBroken),
        (502, e.SourceBroken),
        (400, e.SourceBroken),
        (401, e.SourceBroken),
        (404, e.SourceBroken),
    ],
)
def test_an_unknown_peer_code_is_judged_by_status(
    status: int, expected: type[e.SwarmgetError]
) -> None:
    assert PEER_ERRORS.for_code("from_a_newer_helper", status) is expected
    assert PEER_ERRORS.for_code(None, status) is expected


def test_a_known_code_with_another_status_is_judged_by_status() -> None:
    assert PEER_ERRORS.for_code("origin_unreachable", 502) is e.SourceBroken
    assert PEER_ERRORS.for_code("origin_changed", 503) is e.SourceRateLimited


def test_a_table_refuses_a_code_listed_twice() -> None:
    from swarmget.protocol.errors import ErrorTable

    row = WireError(code="x", status=400, raised=e.SourceBroken)
    with pytest.raises(ValueError, match="twice"):
        ErrorTable([row], default=row, fallback=lambda status: e.SourceBroken)


# --- over the wire: the helper's answer, read by the requester's client ------------------------


def _answer(row: WireError) -> web.Response:
    """What the helper answers for this row, made by the helper's own code."""
    if row.answers is not None:
        return _origin_error(_raised_by_server(row))
    if row is PEER_ERRORS.default:
        return _origin_error(e.SourceRetryable("connection reset"))
    return refused(Refusal(row.code, "refused", 3.0))


@pytest.fixture
async def helper_url() -> AsyncIterator[str]:
    """A stand-in helper: ``POST /CODE/v1/range`` answers the row of CODE as the helper would,
    ``POST /raw/STATUS/v1/range`` answers STATUS with a body that is not ours."""

    async def by_code(request: web.Request) -> web.Response:
        return _answer(PEER_ERRORS.row(request.match_info["code"]))

    async def raw(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["status"]), text="<html>proxy</html>")

    app = web.Application()
    app.router.add_post("/raw/{status}/v1/range", raw)
    app.router.add_post("/{code}/v1/range", by_code)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def _client_raises(url: str) -> BaseException:
    info = OriginInfo(
        url="https://example.test/f",
        final_url="https://example.test/f",
        size=100,
        validator=Validator(etag='"v1"'),
        accepts_ranges=True,
        filename="f",
    )
    async with aiohttp.ClientSession() as session:
        peer = PeerAddress(node_id="helper", url=url, slots=1)
        source = PeerSource(session, peer, b"s" * 32, identity_for("requester"))
        with pytest.raises(e.SourceError) as caught:
            async with source.open_range(info, ByteRange(0, 10)):
                pass
    return caught.value


@pytest.mark.parametrize("row", PEER_ERRORS.rows, ids=lambda row: row.code)
async def test_each_peer_error_round_trips(helper_url: str, row: WireError) -> None:
    raised = await _client_raises(f"{helper_url}/{row.code}")
    assert type(raised) is row.raised
    if isinstance(raised, e.SourceRateLimited):  # Retry-After: 3 (ceil(2.5) from the origin)
        assert raised.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "expected"),
    [(429, e.SourceRateLimited), (503, e.SourceRateLimited), (504, e.SourceRetryable)]
    + [(500, e.SourceBroken), (502, e.SourceBroken), (418, e.SourceBroken)],
)
async def test_an_answer_without_our_code_is_judged_by_status(
    helper_url: str, status: int, expected: type[e.SourceError]
) -> None:
    assert type(await _client_raises(f"{helper_url}/raw/{status}")) is expected
