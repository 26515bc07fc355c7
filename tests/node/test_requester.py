"""The requester-only node (``swarmget.node.requester``) and ``swarmget get --hub`` on it.

Real processes on loopback: a hub (SQLite) and helper nodes on 127.0.0.2, .3 ...
(``swarmget.testing.swarm``), a test origin that caps each client address; the requester
runs in this process or as ``swarmget get`` and speaks from 127.0.0.1, so the origin sees
three separate machines and the hub puts all of 127.0.0.0/16 in one group.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from swarmget.core.digests import parse_checksum_spec
from swarmget.engine import DownloadSpec
from swarmget.net.signing import load_secret
from swarmget.node.requester import HubOutcome, HubReport, RequesterConfig, open_requester
from swarmget.testing.cli import run_cli
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import LocalSwarm, NodeApi, open_local_swarm

MiB = 1024 * 1024
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=2 * MiB) as o:
        o.add_generated("f.bin", 8 * MiB + 5, seed=14)
        yield o


@pytest.fixture
async def swarm(tmp_path: Path) -> AsyncIterator[LocalSwarm]:
    """Two helper nodes, both registered (each sees the other)."""
    async with (
        open_local_swarm(tmp_path / "swarm", 2) as swarm,
        aiohttp.ClientSession() as session,
    ):
        apis = [NodeApi(session, swarm.node(i)) for i in range(2)]
        async with asyncio.timeout(20):
            while not all([await api.peers() for api in apis]):
                await asyncio.sleep(0.1)
        yield swarm


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_requester_downloads_with_real_helpers_without_registering(
    origin: TestOrigin, swarm: LocalSwarm, tmp_path: Path
) -> None:
    expected = origin.expected_sha256("f.bin")
    spec = DownloadSpec(
        url=origin.url("f.bin"),
        output=tmp_path / "out.bin",
        checksums=(parse_checksum_spec(f"sha256:{expected}"),),
    )
    reports: list[HubReport] = []
    config = RequesterConfig(
        secret=load_secret(swarm.secret_file),
        hub_urls=tuple(swarm.hub_urls()),
        source_address="127.0.0.1",
    )
    async with open_requester(config, on_hub=reports.append) as requester:
        record = requester.downloads.create(spec)
        assert record.task is not None
        await asyncio.wait_for(record.task, 120)
        async with aiohttp.ClientSession() as session:
            seen = await NodeApi(session, swarm.node(0)).peers()
    assert record.result is not None, record.error
    assert record.result.verified == ("sha256",)
    assert _sha256(tmp_path / "out.bin") == expected
    helper_ids = {swarm.node(i).node_id for i in range(2)}
    helped = {s.source_id for s in record.result.sources if s.claimed > 0}
    assert helped & helper_ids, record.result.sources
    assert [(r.outcome, r.peers) for r in reports] == [(HubOutcome.ANSWERED, 2)]
    # the hub never listed the requester: it did not register
    assert requester.node_id not in {p["node_id"] for p in seen}


async def test_get_hub_reports_the_hub_s_answer_in_json(
    origin: TestOrigin, swarm: LocalSwarm, tmp_path: Path
) -> None:
    rc, out, err = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path / "out.bin"), "--json",
        "--hub", swarm.hub_urls()[0], "--secret-file", str(swarm.secret_file),
        "--source-address", "127.0.0.1", timeout=120,
    )  # fmt: skip
    assert rc == 0, err
    result = json.loads(out)
    assert result["hub"] == {
        "status": "answered",
        "hub_url": swarm.hub_urls()[0],
        "peers": 2,
        "alone": False,
        "error": None,
    }
    assert _sha256(tmp_path / "out.bin") == origin.expected_sha256("f.bin")
    assert "downloading alone" not in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_get_hub_with_the_hub_down_says_so_and_runs_alone(
    origin: TestOrigin, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    secret.chmod(0o600)
    hub_url = f"http://127.0.0.1:{_closed_port()}"
    rc, out, err = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path / "out.bin"), "--json",
        "--hub", hub_url, "--secret-file", str(secret), "--source-address", "127.0.0.1",
        timeout=120,
    )  # fmt: skip
    assert rc == 0, err
    assert "hub unreachable, downloading alone" in err
    hub = json.loads(out)["hub"]
    assert (hub["status"], hub["alone"], hub["peers"]) == ("unavailable", True, 0)
    assert hub_url in hub["error"]
    assert _sha256(tmp_path / "out.bin") == origin.expected_sha256("f.bin")


async def _old_hub_answer(request: web.Request) -> web.Response:
    """What a hub older than the requester-only query answers an unregistered asker (it
    ignores ``?requester=1``): 404 ``unknown_node``."""
    return web.json_response(
        {"error": "node x is not registered (any more)", "code": "unknown_node"}, status=404
    )


async def test_an_old_hub_is_reported_too_old_and_the_download_goes_alone(
    origin: TestOrigin, tmp_path: Path
) -> None:
    app = web.Application()
    app.router.add_get("/v1/peers", _old_hub_answer)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        reports: list[HubReport] = []
        config = RequesterConfig(
            secret=b"s" * 32, hub_urls=(f"http://127.0.0.1:{port}",), source_address="127.0.0.1"
        )
        async with open_requester(config, on_hub=reports.append) as requester:
            record = requester.downloads.create(
                DownloadSpec(url=origin.url("f.bin"), output=tmp_path / "out.bin")
            )
            assert record.task is not None
            await asyncio.wait_for(record.task, 120)
    finally:
        await runner.cleanup()
    assert record.result is not None, record.error
    assert _sha256(tmp_path / "out.bin") == origin.expected_sha256("f.bin")
    assert [r.outcome for r in reports] == [HubOutcome.TOO_OLD]
    assert reports[0].alone
    assert "upgrade the hub" in reports[0].describe()


async def test_get_hub_says_when_the_download_ended_before_the_hub_answered(
    origin: TestOrigin, tmp_path: Path
) -> None:
    """A hub that accepts the query but never answers: the download goes on at once on
    this host's connections, ends, and the JSON says the hub did not answer (no warning:
    nothing went wrong that the user must fix)."""
    release = asyncio.Event()

    async def never_answers(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({}, status=503)

    app = web.Application()
    app.router.add_get("/v1/peers", never_answers)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    secret.chmod(0o600)
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        hub_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        rc, out, err = await run_cli(
            "get", origin.url("f.bin"), "-o", str(tmp_path / "out.bin"), "--json",
            "--hub", hub_url, "--secret-file", str(secret), "--source-address", "127.0.0.1",
            timeout=120,
        )  # fmt: skip
    finally:
        release.set()
        await runner.cleanup()
    assert rc == 0, err
    hub = json.loads(out)["hub"]
    assert (hub["status"], hub["alone"], hub["hub_url"]) == ("no_answer", False, hub_url)
    assert "downloading alone" not in err
    assert _sha256(tmp_path / "out.bin") == origin.expected_sha256("f.bin")
