"""Library errors reach people in plain words (issue #16: ``ClientConnectorError(
ConnectionKey(...))`` in ``status``, ``peers``, ``get --hub`` and the node's log)."""

from __future__ import annotations

import aiohttp

from swarmget.net.plain import plain_words


async def test_a_refused_connection_in_plain_words() -> None:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get("http://127.0.0.9:9/"):
                raise AssertionError("nothing listens on port 9")
        except aiohttp.ClientError as exc:
            said = plain_words(exc)
    assert said == "cannot connect to 127.0.0.9:9: connection refused"


def test_other_failures_in_plain_words() -> None:
    assert plain_words(TimeoutError()) == "no answer in time"
    assert plain_words(aiohttp.ServerDisconnectedError()) == "the server closed the connection"
    assert plain_words(ConnectionResetError(104, "x")) == "connection reset by peer"
    assert "Error" not in plain_words(aiohttp.ClientPayloadError("boom"))
