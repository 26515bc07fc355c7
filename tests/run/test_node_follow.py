"""How ``swarmget get`` follows a download handed to the node (``NodeSession.follow``): every
call asks the node to hold it until the download ends (``?wait=``), and a node that answers
at once instead (an older one, without the held call) is still followed to the end, state
by state (a real Unix-socket server standing in for that node)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from swarmget.run.remote import POLL, LocalNode, NodeSession

STATES = ("starting", "running", "running", "done")


async def test_a_node_that_answers_at_once_is_followed_to_the_end(tmp_path: Path) -> None:
    sock = tmp_path / "api.sock"
    asked: list[str] = []
    answers = iter(STATES)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        asked.append(head.split(b" ")[1].decode())
        body = json.dumps({"id": "d1", "url": "http://o/f", "state": next(answers)}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(sock))
    async with server:
        node = LocalNode(api_url="", token="t", download_dir=tmp_path, state_dir=tmp_path)
        data = await NodeSession(str(sock), node).follow("d1", lambda _p: None)
    assert data["state"] == "done"
    # held calls asked for, without events (progress is all a follower shows)
    assert asked == [f"/v1/downloads/d1?wait={POLL}&events=0"] * len(STATES)
