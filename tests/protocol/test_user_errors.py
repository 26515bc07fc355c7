"""The user API's errors through one table: the node answers by ``USER_ERRORS``, the CLI's
``NodeSession`` reads the code back into the exception the table names."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from swarmget.core import errors as e
from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.node.statefiles import API_SOCKET
from swarmget.node.user_api import _error, _refusal
from swarmget.protocol.errors import USER_ERRORS, WireError
from swarmget.protocol.user import DOWNLOADS_PATH, CreateDownload
from swarmget.run.remote import LocalNode, NodeSession, error_answer

REQUEST = CreateDownload(url="https://example.test/f")


def test_every_user_code_is_listed_once() -> None:
    codes = [row.code for row in USER_ERRORS.rows]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("row", USER_ERRORS.rows, ids=lambda row: row.code)
def test_each_user_row_is_found_from_both_sides(row: WireError) -> None:
    assert USER_ERRORS.row(row.code) is row
    assert USER_ERRORS.for_code(row.code, row.status) is row.raised
    if row.answers is not None:  # no earlier row shadows it
        assert USER_ERRORS.for_exception(row.answers("m")) is row


def test_every_usage_error_of_the_tree_is_answered_with_its_own_code() -> None:
    for kind in (k for k in e.__dict__.values() if isinstance(k, type)):
        if issubclass(kind, e.UsageError):
            row = USER_ERRORS.for_exception(kind("m"))
            status = 409 if kind is e.WrongState else 400  # (a state conflict: 409)
            assert (row.code, row.status, row.raised) == (kind.code, status, kind)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, e.UsageError), (409, e.UsageError), (500, e.DownloadError), (503, e.DownloadError)],
)
def test_an_unknown_user_code_is_judged_by_status(
    status: int, expected: type[e.SwarmgetError]
) -> None:
    assert USER_ERRORS.for_code("from_a_newer_node", status) is expected


# --- over the wire: the node's answer, read by the CLI's session ------------------------------


def _answer(row: WireError) -> web.Response:
    """What the user API answers for this row, made by its own code."""
    if row.answers is not None:
        return _error(row.answers("refused"))
    return _refusal(row.code, "refused")


async def _start_raises(tmp_path: Path, row: WireError) -> BaseException:
    async def create(request: web.Request) -> web.Response:
        return _answer(row)

    app = web.Application()
    app.router.add_post(DOWNLOADS_PATH, create)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    sock = tmp_path / "api.sock"
    try:
        await web.UnixSite(runner, str(sock)).start()
        node = LocalNode(api_url="", token="t", download_dir=tmp_path, state_dir=tmp_path)
        with pytest.raises(e.SwarmgetError) as caught:
            await NodeSession(str(sock), node).start(REQUEST)
    finally:
        await runner.cleanup()
    return caught.value


@pytest.mark.parametrize("row", USER_ERRORS.rows, ids=lambda row: row.code)
async def test_each_user_error_round_trips(tmp_path: Path, row: WireError) -> None:
    raised = await _start_raises(tmp_path, row)
    assert type(raised) is row.raised
    assert "refused" in str(raised)


# --- the real node ---------------------------------------------------------------------------


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")
    async with open_node(config) as n:
        yield n


@contextlib.asynccontextmanager
async def _session(
    node: Node, tmp_path: Path, token: str | None = None
) -> AsyncIterator[NodeSession]:
    """The CLI's session on the node's Unix socket (as ``run.remote.open_local_node`` makes
    it for a node that announced itself)."""
    local = LocalNode(
        api_url=node.api_url,
        token=node.api_token if token is None else token,
        download_dir=tmp_path / "d",
        state_dir=tmp_path / "s",
    )
    yield NodeSession(str(tmp_path / "s" / API_SOCKET), local)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (CreateDownload(url="ftp://example.test/f"), e.InvalidURL),
        (CreateDownload(url="https://example.test/f", output="../f"), e.DestinationOutside),
        (CreateDownload(url="https://example.test/f", checksums=["md7:00"]), e.InvalidChecksum),
    ],
)
async def test_the_node_refuses_by_code_and_the_cli_reads_it(
    node: Node, tmp_path: Path, request_: CreateDownload, expected: type[e.SwarmgetError]
) -> None:
    async with _session(node, tmp_path) as api:
        with pytest.raises(e.UsageError) as caught:
            await api.start(request_)
    assert type(caught.value) is expected


async def test_a_wrong_token_is_refused_with_the_auth_row(node: Node, tmp_path: Path) -> None:
    async with _session(node, tmp_path) as api:
        assert (await api.call("GET", "/v1/downloads"))[0] == 200
    async with _session(node, tmp_path, token="wrong") as api:
        status, data = await api.call("GET", "/v1/downloads")
        with pytest.raises(e.UsageError, match="wrong API token"):
            await api.start(REQUEST)
    assert (status, data["code"]) == (USER_ERRORS.row("auth").status, "auth")


async def test_an_unknown_download_is_the_not_found_row(node: Node, tmp_path: Path) -> None:
    async with _session(node, tmp_path) as api:
        status, data = await api.call("GET", "/v1/downloads/nosuch")
    assert (status, data["code"]) == (USER_ERRORS.row("not_found").status, "not_found")


@pytest.mark.parametrize("row", USER_ERRORS.rows, ids=lambda row: row.code)
def test_an_operator_command_reads_any_answer_by_its_code(row: WireError) -> None:
    """``swarmget peers`` / ``status`` read a failed call as the row's exception (a hub that
    is down is the ``HubError`` the node met, not a generic failure)."""
    answer = {"error": "refused", "code": row.code}
    raised = error_answer(row.status, answer, "the node answered")
    assert type(raised) is row.raised
    assert str(raised) == "the node answered: refused"
