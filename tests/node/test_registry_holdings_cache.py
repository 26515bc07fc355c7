"""The group path's holdings under the share cache (#15, docs/fetch-once.md §7): a finished
download kept through ``RegistryHoldings`` is under the same budget and LRU as every kept
file, a running download pins its holding (released on every exit), and a part file of a
new download of kept content never replaces or withdraws the kept file."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from swarmget.core.content import ContentKey
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.core.share_cache import SharePolicy
from swarmget.node.content_adapters import RegistryHoldings
from swarmget.node.holdings import HoldingsRegistry
from swarmget.node.share_cache import CACHE_DIR, ShareCache

SIZE = 100
WHOLE = RangeSet([ByteRange(0, SIZE)])


def key(i: int) -> ContentKey:
    return ContentKey.from_probe(final_url=f"http://o.test/{i}", size=SIZE, etag=f'"e{i}"')


def _put(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(SIZE))
    return path


def _holdings(tmp_path: Path, budget: int = 250) -> tuple[RegistryHoldings, list[str]]:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    registry = HoldingsRegistry([tmp_path / "dl", state / CACHE_DIR])
    evicted: list[str] = []
    ticks = itertools.count(1_000_000.0)  # a fake clock: one second per reading
    cache = ShareCache(
        state, registry, SharePolicy(budget), clock=lambda: next(ticks), on_evict=evicted.append
    )
    cache.load()
    return RegistryHoldings(registry, cache), evicted


def _parts(h: RegistryHoldings) -> tuple[HoldingsRegistry, ShareCache]:
    assert h.cache is not None
    return h.registry, h.cache


def test_finished_group_downloads_share_one_budget_and_lru(tmp_path: Path) -> None:
    holdings, evicted = _holdings(tmp_path)
    registry, cache = _parts(holdings)
    dl = tmp_path / "dl"
    holdings.offer(key(1), _put(dl / "one.bin"), WHOLE)
    holdings.offer(key(2), _put(dl / "two.bin"), WHOLE)
    assert cache.kept_bytes() == 2 * SIZE
    assert cache.names() == [key(2).index_name(), key(1).index_name()]
    holdings.offer(key(3), _put(dl / "three.bin"), WHOLE)  # over the budget: LRU goes
    assert evicted == [key(1).index_name()]
    assert registry.lookup(key(1).index_name()) is None
    assert (dl / "one.bin").exists()  # the user's download: withdrawn, not deleted
    assert cache.kept_bytes() == 2 * SIZE
    finished = registry.lookup(key(3).index_name())
    assert finished is not None
    assert finished.fingerprint is not None


def test_a_running_download_is_pinned_and_never_evicted(tmp_path: Path) -> None:
    holdings, evicted = _holdings(tmp_path, budget=150)
    registry, cache = _parts(holdings)
    dl = tmp_path / "dl"
    holdings.offer(key(1), _put(dl / "one.bin"), WHOLE)
    with holdings.pinned(key(2)):  # downloading key 2
        assert registry.pins(key(2).index_name()) == 1
        holdings.offer(key(2), _put(dl / "two.bin.part"), RangeSet([ByteRange(0, 40)]))
        holdings.offer(key(2), _put(dl / "two.bin"), WHOLE)
        assert evicted == [key(1).index_name()]  # one of them must go: not the pinned one
        with holdings.pinned(key(3)):
            holdings.offer(key(3), _put(dl / "three.bin"), WHOLE)
            assert cache.keeps(key(2).index_name())
            assert cache.keeps(key(3).index_name())
        # key 3's download ended: it is the least recently used unpinned one, over budget
        assert evicted == [key(1).index_name(), key(3).index_name()]
    assert registry.pins(key(2).index_name()) == 0
    assert cache.keeps(key(2).index_name())


class DiskFull(Exception):
    pass


def test_pins_are_released_when_the_download_fails(tmp_path: Path) -> None:
    holdings, evicted = _holdings(tmp_path, budget=150)
    registry, cache = _parts(holdings)
    dl = tmp_path / "dl"
    seen: list[list[str]] = []

    def failing_download() -> None:
        with holdings.pinned(key(2)):
            holdings.offer(key(2), _put(dl / "two.bin"), WHOLE)
            holdings.offer(key(3), _put(dl / "three.bin"), WHOLE)
            seen.append(list(evicted))
            raise DiskFull  # the download fails after its file was kept

    with pytest.raises(DiskFull):
        failing_download()
    assert seen == [[key(3).index_name()]]  # over the budget: never the pinned one
    assert registry.pins(key(2).index_name()) == 0
    holdings.offer(key(4), _put(dl / "four.bin"), WHOLE)
    assert evicted[-1] == key(2).index_name()  # no pin left behind: LRU again
    assert cache.kept_bytes() == SIZE


def test_a_part_file_never_replaces_or_withdraws_a_kept_file(tmp_path: Path) -> None:
    holdings, _ = _holdings(tmp_path)
    registry, cache = _parts(holdings)
    kept = _put(tmp_path / "dl" / "one.bin")
    holdings.offer(key(1), kept, WHOLE)
    holdings.offer(key(1), _put(tmp_path / "dl" / "again.part"), RangeSet([ByteRange(0, 10)]))
    holding = registry.lookup(key(1).index_name())
    assert holding is not None
    assert holding.path == kept
    assert holding.verified == WHOLE
    holdings.withdraw(key(1))  # that new download failed
    assert registry.lookup(key(1).index_name()) is not None
    assert cache.keeps(key(1).index_name())
    holdings.offer(key(2), _put(tmp_path / "dl" / "two.part"), RangeSet([ByteRange(0, 10)]))
    holdings.withdraw(key(2))  # a part file only: withdrawn
    assert registry.lookup(key(2).index_name()) is None


def test_a_file_outside_the_nodes_directories_is_not_kept(tmp_path: Path) -> None:
    holdings, _ = _holdings(tmp_path)
    registry, cache = _parts(holdings)
    holdings.offer(key(1), _put(tmp_path / "elsewhere" / "one.bin"), WHOLE)
    assert registry.lookup(key(1).index_name()) is None
    assert not cache.keeps(key(1).index_name())
