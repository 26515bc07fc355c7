"""Runtime helper settings (issue #16, "Runtime settings"), on real node processes: slots,
rate limit and daily quota changed through ``PUT /v1/settings`` apply at once, are kept in
the state directory across a restart (winning over the command line's values, with their
source shown), and "pause helping" makes the helper refuse a real, signed peer request
with its reason (``helping_paused``) while the node stays registered with its hub."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.net.signing import json_body, signed_headers
from swarmget.node.settings import SETTINGS_FILE
from swarmget.protocol.peer import HEALTH_PATH, RANGE_PATH
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import LocalSwarm, NodeApi, node_args, open_local_swarm, start_proc

pytestmark = pytest.mark.slow
MiB = 1024 * 1024


def secret_of(swarm: LocalSwarm) -> bytes:
    return swarm.secret_file.read_bytes().strip()


async def wait_listed(api: NodeApi, node_id: str) -> None:
    async with asyncio.timeout(20):
        while node_id not in {p["node_id"] for p in await api.peers()}:
            await asyncio.sleep(0.2)


async def test_settings_change_at_once_and_survive_a_restart(tmp_path: Path) -> None:
    async with (
        open_local_swarm(tmp_path, 1, node_extra=["--slots", "3", "--rate-limit", "5M"]) as swarm,
        aiohttp.ClientSession() as session,
    ):
        node = swarm.node(0)
        api = NodeApi(session, node)
        status, view = await api.call("GET", "/v1/settings")
        assert status == 200
        assert view["slots"] == {"value": 3, "source": "config"}
        assert view["rate_limit"] == {"value": 5 * MiB, "source": "config"}
        assert view["daily_quota"] == {"value": None, "source": "config"}

        change = {"slots": 7, "rate_limit": 2 * MiB, "daily_quota": 3 * 1024 * MiB}
        status, view = await api.call("PUT", "/v1/settings", change)
        assert status == 200
        assert view["slots"] == {"value": 7, "source": "runtime"}
        status, stat = await api.call("GET", "/v1/status")
        helper = stat["helper"]
        assert (helper["slots"], helper["rate_limit"], helper["daily_quota"]) == (
            7, 2 * MiB, 3 * 1024 * MiB,
        )  # fmt: skip
        assert os.stat(node.state_dir / SETTINGS_FILE).st_mode & 0o777 == 0o600

        await node.proc.stop()
        args = node_args(
            swarm.hub_urls(), node.address, swarm.secret_file, node.state_dir,
            node.download_dir, ["--slots", "3", "--rate-limit", "5M"],
        )  # fmt: skip
        node.proc = await start_proc(args, tmp_path / "node0-again.log", dict(os.environ))
        api = NodeApi(session, node)
        status, view = await api.call("GET", "/v1/settings")
        assert view["slots"] == {"value": 7, "source": "runtime"}
        assert view["rate_limit"] == {"value": 2 * MiB, "source": "runtime"}
        assert view["daily_quota"] == {"value": 3 * 1024 * MiB, "source": "runtime"}
        _, stat = await api.call("GET", "/v1/status")
        assert stat["helper"]["slots"] == 7

        status, view = await api.call("PUT", "/v1/settings", {"reset": ["slots", "rate_limit"]})
        assert view["slots"] == {"value": 3, "source": "config"}
        assert view["rate_limit"] == {"value": 5 * MiB, "source": "config"}
        await node.proc.stop()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slots": 0}, "slots"),
        ({"slots": None}, "slots"),
        ({"rate_limit": 10}, "rate_limit"),
        ({"daily_quota": -1}, "daily_quota"),
        ({"bogus": 1}, "bogus"),
        ({"reset": ["nothing"]}, "reset"),
    ],
)
async def test_bad_settings_are_refused_naming_the_field(
    tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    async with open_local_swarm(tmp_path, 1) as swarm, aiohttp.ClientSession() as session:
        api = NodeApi(session, swarm.node(0))
        status, answer = await api.call("PUT", "/v1/settings", body)
        assert (status, answer["code"]) == (400, "bad_request")
        assert field in answer["error"]
        _, view = await api.call("GET", "/v1/settings")
        assert {v["source"] for v in view.values()} == {"config"}


async def signed_range(
    session: aiohttp.ClientSession, swarm: LocalSwarm, peer_url: str, origin: TestOrigin
) -> tuple[int, dict[str, Any], str | None]:
    size = len(origin.content("f.bin"))
    body = json_body({"url": origin.url("f.bin"), "start": 0, "end": size, "size": size})
    url = f"{peer_url}{RANGE_PATH}"
    headers = signed_headers(secret_of(swarm), identity_for("asker"), "POST", url, body)
    headers["Content-Type"] = "application/json"
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status == 200:
            await resp.read()
            return 200, {}, None
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def test_a_paused_helper_refuses_a_peer_with_its_reason(tmp_path: Path) -> None:
    async with (
        open_test_origin(rate_per_ip=4 * MiB) as origin,  # helpers help: 8 MiB alone ~2 s
        open_local_swarm(tmp_path, 2) as swarm,
        aiohttp.ClientSession() as session,
    ):
        origin.add_generated("f.bin", 256 * 1024, seed=1)
        origin.add_generated("big.bin", 8 * MiB, seed=2)
        helper = swarm.node(1)
        peer_url = str(helper.proc.info["peer_url"])
        api = NodeApi(session, helper)
        assert (await signed_range(session, swarm, peer_url, origin))[0] == 200

        status, view = await api.call("PUT", "/v1/settings", {"helping_paused": True})
        assert view["helping_paused"] == {"value": True, "source": "runtime"}
        status, answer, retry_after = await signed_range(session, swarm, peer_url, origin)
        assert (status, answer["code"]) == (503, "helping_paused")
        assert "paused" in answer["error"]
        assert retry_after is not None
        url = f"{peer_url}{HEALTH_PATH}"
        headers = signed_headers(secret_of(swarm), identity_for("asker"), "GET", url)
        async with session.get(url, headers=headers) as resp:
            assert resp.status == 503  # requesters checking health pass it by
        requester = NodeApi(session, swarm.node(0))
        await wait_listed(requester, helper.node_id)  # still registered with the hub
        done = await requester.wait(await requester.start(origin.url("big.bin")))
        assert done["state"] == "done", done["error"]
        used = {s["id"]: s["claimed"] for s in done["progress"]["sources"]}
        assert used.get(helper.node_id, 0) == 0  # passed by: its health check was refused

        await api.call("PUT", "/v1/settings", {"helping_paused": False})
        assert (await signed_range(session, swarm, peer_url, origin))[0] == 200
