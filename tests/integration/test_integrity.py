"""A deliberately corrupting helper in a 4-node swarm: caught by the relay's manifest, by
sampling (on by default), or — with neither — by the final checksum, which says who
delivered what; and the result always says what was and was not checked."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.relay.run import RelayConfig, open_relay
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import LocalSwarm, NodeApi, open_local_swarm

MiB = 1024 * 1024
EVIL = 2  # this node runs swarmget.testing.evil_node: it flips a byte in every chunk
CORRUPTING = {EVIL: "swarmget.testing.evil_node"}
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin(rate_per_ip=3 * MiB) as o:
        o.add_generated("f.bin", 12 * MiB + 9, seed=77)
        yield o


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def download(
    swarm: LocalSwarm, session: aiohttp.ClientSession, url: str, **fields: Any
) -> dict[str, Any]:
    api = NodeApi(session, swarm.node(0))
    async with asyncio.timeout(15):
        while len(await api.peers()) < len(swarm.nodes) - 1:
            await asyncio.sleep(0.2)
    return await api.wait(await api.start(url, **fields))


def sha256_of(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_caught(result: dict[str, Any], swarm: LocalSwarm, origin: TestOrigin) -> None:
    assert result["state"] == "done", result["error"]
    assert sha256_of(result["result"]["path"]) == origin.expected_sha256("f.bin")
    evil = swarm.node(EVIL).node_id
    sources = {s["id"]: s for s in result["progress"]["sources"]}
    assert sources[evil]["state"] == "banned", sources[evil]
    assert "bad data" in sources[evil]["ban_reason"]
    corrupt = [e for e in result["events"] if e["kind"] == "corrupt"]
    assert corrupt
    assert all(evil in (e["source"] or "") for e in corrupt)  # nobody else was blamed


async def test_relay_manifest_catches_and_bans_the_corrupting_helper(
    origin: TestOrigin, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    secret = secrets.token_hex(32)
    config = RelayConfig(
        secret=secret.encode(),
        cache_dir=tmp_path / "relay",
        budget=64 * MiB,
        piece_size=256 * 1024,
        origin_policy=AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8")),
    )
    async with (
        open_relay(config) as relay,
        open_local_swarm(
            tmp_path / "swarm", 4, node_module=CORRUPTING, secret=secret,
            node_extra={0: ["--relay", relay.url]},
        ) as swarm,
    ):  # fmt: skip
        result = await download(swarm, session, origin.url("f.bin"))
        assert_caught(result, swarm, origin)
        assert "sha256" in result["result"]["verified"]  # the manifest's whole-file digest
        assert relay.relay.origin_downloads == 1
        helper_ips = {n.address for n in swarm.nodes}
        assert not helper_ips & set(origin.stats().bytes_by_ip)  # helpers used the relay


async def test_sampling_catches_and_bans_the_corrupting_helper(
    origin: TestOrigin, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path, 4, node_module=CORRUPTING) as swarm:
        result = await download(swarm, session, origin.url("f.bin"), verify_sample=0.05)
        assert_caught(result, swarm, origin)


async def test_default_settings_catch_and_ban_the_corrupting_helper(
    origin: TestOrigin, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """No relay, no checksum, no Repr-Digest, nothing asked for: every helper stream is
    sampled against the origin, the liar is banned, its ranges fetched again."""
    async with open_local_swarm(tmp_path, 4, node_module=CORRUPTING) as swarm:
        result = await download(swarm, session, origin.url("f.bin"))
        assert_caught(result, swarm, origin)
        report = result["result"]["verification"]
        assert report["methods"] == ["sampled"]
        assert report["level"] == "sampled"
        assert not report["whole_file"]
        assert report["helper_bytes"] > 0
        assert report["sampled_streams"] >= 1
        # every stream of the honest helpers was compared; the liar's were dropped unchecked
        assert report["sample_fraction"] == 0.01
        assert report["sampled_bytes"] <= 0.2 * result["result"]["size"]


async def test_default_sampling_catches_a_helper_that_behaves_while_new(
    origin: TestOrigin,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The liar passes its first MiB on untouched (its first stream passes the check), then
    corrupts a byte in every 2 KiB: a later stream's window (>= 4 KiB) catches it."""
    monkeypatch.setenv("SWARMGET_EVIL_CLEAN_BYTES", str(1 * MiB))
    monkeypatch.setenv("SWARMGET_EVIL_FLIP_EVERY", str(2 * 1024))
    async with open_local_swarm(tmp_path, 4, node_module=CORRUPTING) as swarm:
        result = await download(swarm, session, origin.url("f.bin"))
        assert_caught(result, swarm, origin)
        assert result["result"]["verification"]["level"] == "sampled"


async def test_with_sampling_off_the_result_says_helpers_were_not_checked(
    origin: TestOrigin, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path, 3) as swarm:
        result = await download(swarm, session, origin.url("f.bin"), verify_sample=0)
        assert result["state"] == "done", result["error"]
        report = result["result"]["verification"]
        assert (report["level"], report["methods"], report["sampled_streams"]) == ("none", [], 0)
        assert report["helper_bytes"] > 0  # plainly: this many bytes nobody checked
        assert report["helper_streams"] > 0


async def test_without_either_the_checksum_names_who_delivered_what(
    origin: TestOrigin, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with open_local_swarm(tmp_path, 4, node_module=CORRUPTING) as swarm:
        checksum = f"sha256:{origin.expected_sha256('f.bin')}"
        result = await download(
            swarm, session, origin.url("f.bin"), checksums=[checksum], verify_sample=0
        )
        assert result["state"] == "failed"
        assert result["error"]["code"] == "checksum_mismatch"
        message = result["error"]["message"]
        assert "Delivered by" in message
        assert swarm.node(EVIL).node_id in message
        assert "kept" in message
