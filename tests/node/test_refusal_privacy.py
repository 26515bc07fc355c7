"""A helper's SSRF refusal tells the requester that it refused, and nothing the requester did
not know already: no DNS answer, no address class, no port (issue #12)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.core.addresses import AddressPolicy
from swarmget.net.auth import json_body, signed_headers
from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.testing.fakes import identity_for

SECRET = b"s" * 32


@pytest.fixture
async def guarded_node(tmp_path: Path) -> AsyncIterator[Node]:
    config = NodeConfig(
        secret=SECRET,
        state_dir=tmp_path / "state",
        download_dir=tmp_path / "dl",
        listen_host="127.0.0.2",
        origin_policy=AddressPolicy(),
    )
    async with open_node(config) as node:
        yield node


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:9/secret.bin",  # DNS says 127.0.0.1 / ::1: not for the requester
        "http://10.1.2.3:22/x",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_the_refusal_says_only_that_the_policy_refused(
    guarded_node: Node, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = json_body({"url": target, "start": 0, "end": 100, "size": 1000})
    url = f"{guarded_node.peer_url}/v1/range"
    headers = signed_headers(SECRET, identity_for("tester"), "POST", url, body)
    with caplog.at_level(logging.WARNING, logger="swarmget"):
        async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
            status, answer = r.status, json.loads(await r.read())
    assert status == 403
    assert answer == {"error": "refused by the address policy", "code": "forbidden_target"}
    # the details stay in this node's own log
    assert any(r.name == "swarmget.node.helper" for r in caplog.records)
