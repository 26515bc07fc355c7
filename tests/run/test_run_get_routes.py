"""``run.get.download`` goes the way ``choose_route`` says, on loopback: alone when the
node file is stale, and through a relay (whose manifest then checks every piece)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.verification import Verification
from swarmget.node.statefiles import NODE_FILE
from swarmget.relay.run import RelayConfig, open_relay
from swarmget.run.get import (
    GetRequest,
    Route,
    RouteTaken,
    choose_route,
    download,
    facts_of,
    prepare,
)
from swarmget.testing.origin import MiB, TestOrigin, open_test_origin


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 2 * MiB + 3, seed=5)
        yield o


def no_fallback(taken: RouteTaken) -> None:
    assert not taken.fallback, f"no fallback expected: {taken}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_stale_node_file_means_the_download_goes_alone(
    origin: TestOrigin, tmp_path: Path
) -> None:
    """A node that crashed leaves node.json behind: nothing answers on its socket."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / NODE_FILE).write_text('{"download_dir": "/nowhere"}')
    request = GetRequest(url=origin.url("f.bin"), output=tmp_path / "f", state_dir=state)
    assert choose_route(facts_of(prepare(request))) is Route.NODE
    told: list[RouteTaken] = []
    result = await download(request, display=None, on_route=told.append)
    assert [t.route for t in told] == [Route.ALONE]  # and said why: the node did not answer
    assert told[0].fallback
    assert told[0].reason is not None
    assert "no node answers" in told[0].reason
    assert sha256(result.path) == origin.expected_sha256("f.bin")
    stats = origin.stats()  # every byte from our own connections (an end-game copy may
    assert set(stats.bytes_by_ip) == {"127.0.0.1"}  # fetch the last piece twice)
    assert 2 * MiB + 3 <= stats.bytes_total


async def test_through_a_relay_every_piece_is_checked(origin: TestOrigin, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(secrets.token_hex(32))
    secret_file.chmod(0o600)
    config = RelayConfig(
        secret=secret_file.read_text().encode(),
        cache_dir=tmp_path / "relay",
        budget=64 * MiB,
        piece_size=256 * 1024,
        origin_policy=AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8")),
    )
    async with open_relay(config) as relay:
        request = GetRequest(
            url=origin.url("f.bin"),
            output=tmp_path / "f",
            relay_url=relay.url,
            secret_file=str(secret_file),
            state_dir=tmp_path / "no-node",
        )
        assert choose_route(facts_of(prepare(request))) is Route.RELAY
        result = await download(request, display=None, on_route=no_fallback)
    assert sha256(result.path) == origin.expected_sha256("f.bin")
    assert Verification.MANIFEST in result.verification.methods
