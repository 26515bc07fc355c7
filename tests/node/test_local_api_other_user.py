"""Another local user cannot use the node's local API or portal on 127.0.0.1, not even with
a stolen token or portal cookie (a browser sends 127.0.0.1's cookies to every port of it,
so a local user's server on another port receives them) (issue #12)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.node.daemon import Node, NodeConfig
from swarmget.run.node import open_node  # the node with its portal

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# One GET with the given headers; prints the status (an HTTPError is an answer too).
CLIENT = """
import json, sys, urllib.error, urllib.request
url, headers = sys.argv[1], json.loads(sys.argv[2])
try:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
"""


def can_switch_user() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = NodeConfig(secret=b"k" * 32, state_dir=tmp_path / "s", download_dir=tmp_path / "d")
    async with open_node(config) as n:
        yield n


async def get_as(user: list[str], url: str, headers: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        *user, sys.executable, "-I", "-c", CLIENT, url, json.dumps(headers),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return int(out)


async def portal_cookie(node: Node) -> str:
    assert node.portal is not None
    async with (
        aiohttp.ClientSession() as s,
        s.get(node.portal.login_url(), allow_redirects=False) as r,
    ):
        assert r.status == 303
        return f"{node.portal.cookie_name}={r.cookies[node.portal.cookie_name].value}"


@pytest.mark.skipif(not can_switch_user(), reason="needs root and setpriv to act as nobody")
async def test_another_user_is_refused_even_with_the_token_and_the_cookie(node: Node) -> None:
    host = node.api_url.removeprefix("http://")
    bearer = {"Authorization": f"Bearer {node.api_token}"}
    cookie = {"Cookie": await portal_cookie(node), "Host": host}
    status_url, portal_url = f"{node.api_url}/v1/status", f"{node.api_url}/portal/"
    # the node's own user gets in with them ...
    assert await get_as([], status_url, bearer) == 200
    assert await get_as([], portal_url, cookie) == 200
    # ... another local user does not, whatever it holds
    assert await get_as(NOBODY, status_url, bearer) == 403
    assert await get_as(NOBODY, portal_url, cookie) == 403
    assert await get_as(NOBODY, f"{node.api_url}/portal/login", {"Host": host}) == 403
    # the Prometheus counters stay open (they carry no secret)
    assert await get_as(NOBODY, f"{node.api_url}/metrics", {}) == 200


def test_find_uid_reads_the_client_socket_of_a_proc_net_tcp_table() -> None:
    from swarmget.net.peercred import find_uid, proc_address  # new with the fix

    client = proc_address(socket.AF_INET, "127.0.0.1", 40000)
    server = proc_address(socket.AF_INET, "127.0.0.1", 7401)
    assert server == ("0100007F" if sys.byteorder == "little" else "7F000001") + ":1CE9"
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
    table = "\n".join(
        [
            head,
            f"   0: {server} 00000000:0000 0A 0:0 00:0 0     0  0 11 1",
            f"   1: {server} {client} 01 0:0 00:0 0     0  0 12 1",  # our end: root
            f"   2: {client} {server} 01 0:0 00:0 0 65534  0 13 1",  # theirs: nobody
        ]
    )
    assert find_uid(table, client, server) == 65534
    assert find_uid(table, server, client) == 0
    assert find_uid(table, client, client) is None
    assert proc_address(socket.AF_INET6, "::1", 1) == (
        "00000000000000000000000001000000:0001"
        if sys.byteorder == "little"
        else "00000000000000000000000000000001:0001"
    )
