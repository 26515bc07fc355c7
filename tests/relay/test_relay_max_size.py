"""The relay's max_size: a larger file is refused before a byte is fetched or written."""

from __future__ import annotations

from pathlib import Path

from swarmget.core.addresses import AddressPolicy, parse_cidrs
from swarmget.core.errors import FileTooLarge, InsufficientStorage
from swarmget.relay.run import RelayConfig, open_relay
from swarmget.testing.origin import open_test_origin

MiB = 1024 * 1024
LOOPBACK = AddressPolicy(allowed_networks=parse_cidrs("127.0.0.0/8"))


def config(tmp_path: Path, max_size: int | None) -> RelayConfig:
    return RelayConfig(
        secret=b"r" * 32,
        cache_dir=tmp_path / "cache",
        budget=64 * MiB,
        origin_policy=LOOPBACK,
        max_size=max_size,
    )


async def test_a_file_over_max_size_is_refused_up_front(tmp_path: Path) -> None:
    async with open_test_origin() as origin, open_relay(config(tmp_path, 2 * MiB)) as running:
        origin.add_generated("big.bin", 3 * MiB, seed=1)
        origin.add_generated("small.bin", MiB, seed=2)
        state = running.relay.request(origin.url("big.bin"))
        await state.done.wait()
        assert isinstance(state.error, FileTooLarge)
        assert origin.stats().bytes_total == 0
        ok = running.relay.request(origin.url("small.bin"))
        await ok.done.wait()
        assert ok.error is None


async def test_an_announced_size_no_disk_holds_fails_the_fetch_only(tmp_path: Path) -> None:
    async with open_test_origin() as origin, open_relay(config(tmp_path, None)) as running:
        origin.add_generated("f.bin", MiB, seed=1)
        origin.configure(announce_size=2**63)
        state = running.relay.request(origin.url("f.bin"))
        await state.done.wait()
        assert isinstance(state.error, InsufficientStorage)
        origin.configure(announce_size=None)
        again = running.relay.request(origin.url("f.bin"))
        await again.done.wait()
        assert again.error is None
