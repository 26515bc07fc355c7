"""The requester's side of the peer API (``PeerSource``) against a real node's helper."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.errors import SourceBroken, SourceError, SourceRetryable
from swarmget.core.http import Validator
from swarmget.core.ranges import ByteRange
from swarmget.net.origin import OriginInfo
from swarmget.net.peer_client import PeerAddress, PeerSource
from swarmget.node.daemon import Node, NodeConfig, open_node
from swarmget.testing.fakes import identity_for
from swarmget.testing.origin import TestOrigin, open_test_origin

SECRET = b"p" * 32
MiB = 1024 * 1024


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 6 * MiB + 3, seed=5)
        yield o


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = NodeConfig(
        secret=SECRET,
        state_dir=tmp_path / "state",
        download_dir=tmp_path / "dl",
        listen_host="127.0.0.2",
        origin_policy=AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8")),
    )
    async with open_node(config) as started:
        yield started


def _info(origin: TestOrigin) -> OriginInfo:
    url = origin.url("f.bin")
    return OriginInfo(
        url=url,
        final_url=url,
        size=6 * MiB + 3,
        validator=Validator(etag=origin.etag("f.bin")),
        accepts_ranges=True,
        filename="f.bin",
    )


def _source(session: aiohttp.ClientSession, node: Node, secret: bytes = SECRET) -> PeerSource:
    peer = PeerAddress(node_id=node.node_id, url=node.peer_url, slots=2)
    return PeerSource(session, peer, secret, identity_for("requester"), download_id="d1")


async def _read(source: PeerSource, info: OriginInfo, rng: ByteRange) -> bytes:
    async with source.open_range(info, rng) as body:
        return b"".join([bytes(chunk) async for chunk in body])


async def test_a_helper_streams_the_range(
    origin: TestOrigin, node: Node, session: aiohttp.ClientSession
) -> None:
    source = _source(session, node)
    for rng in (ByteRange(0, 5 * MiB), ByteRange(5 * MiB, 6 * MiB + 3), ByteRange(7, 9)):
        assert (
            await _read(source, _info(origin), rng) == origin.content("f.bin")[rng.start : rng.end]
        )


async def test_a_wrong_secret_is_the_helpers_refusal(
    origin: TestOrigin, node: Node, session: aiohttp.ClientSession
) -> None:
    source = _source(session, node, secret=b"x" * 32)
    with pytest.raises(SourceBroken, match="401 auth: "):
        await _read(source, _info(origin), ByteRange(0, 10))
    assert origin.stats().bytes_total == 0


async def test_an_origin_the_helper_cannot_use_is_reported(
    origin: TestOrigin, node: Node, session: aiohttp.ClientSession
) -> None:
    info = dataclasses.replace(_info(origin), validator=Validator(etag='"another"'))
    with pytest.raises(SourceError, match=f"helper {node.node_id}: 4"):
        await _read(_source(session, node), info, ByteRange(0, 10))


async def test_a_dead_helper_is_retryable(
    origin: TestOrigin, session: aiohttp.ClientSession
) -> None:
    peer = PeerAddress(node_id="gone", url="http://127.0.0.2:1", slots=1)
    source = PeerSource(session, peer, SECRET, identity_for("requester"))
    with pytest.raises(SourceRetryable):
        await _read(source, _info(origin), ByteRange(0, 10))
