"""The share cache's adapter on a real file system (#15, docs/fetch-once.md §7): eviction
withdraws first and removes only files the cache owns, pins hold, the index survives a
restart, and a tampered index, a link or a stranger's file is never followed or served."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from swarmget.core.content import ContentKey
from swarmget.core.share_cache import SharePolicy
from swarmget.node.holdings import HoldingsRegistry
from swarmget.node.share_cache import CACHE_DIR, STATE_NAME, ShareCache

SIZE = 100


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def key(i: int, size: int = SIZE) -> ContentKey:
    return ContentKey.from_probe(final_url=f"http://o.test/{i}", size=size, etag=f'"e{i}"')


def _open(
    tmp_path: Path, budget: int = 250, clock: FakeClock | None = None
) -> tuple[HoldingsRegistry, ShareCache, list[str]]:
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    registry = HoldingsRegistry([tmp_path / "dl", state / CACHE_DIR])
    evicted: list[str] = []
    cache = ShareCache(
        state, registry, SharePolicy(budget), clock=clock or FakeClock(), on_evict=evicted.append
    )
    cache.load()
    return registry, cache, evicted


def _put(path: Path, size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_eviction_is_lru_withdraws_first_and_removes_only_owned_files(tmp_path: Path) -> None:
    registry, cache, evicted = _open(tmp_path)
    owned = _put(cache.cache_path(key(1)))
    users = _put(tmp_path / "dl" / "two.bin")
    assert cache.keep(key(1), owned)
    assert cache.keep(key(2), users)
    assert cache.keep(key(3), _put(cache.cache_path(key(3))))
    assert evicted == [key(1).index_name()]
    assert registry.lookup(key(1).index_name()) is None
    assert not owned.exists()  # the cache's own copy is deleted
    assert cache.keep(key(4), _put(cache.cache_path(key(4))))
    assert evicted[-1] == key(2).index_name()
    assert registry.lookup(key(2).index_name()) is None
    assert users.exists()  # the user's download is only withdrawn
    assert cache.evicted == 2
    assert cache.kept_bytes() == 2 * SIZE


def test_a_pinned_file_is_not_evicted_and_its_serve_counts_as_use(tmp_path: Path) -> None:
    registry, cache, evicted = _open(tmp_path)
    for i in (1, 2):
        cache.keep(key(i), _put(cache.cache_path(key(i))))
    with registry.pinned(key(1).index_name()):  # being served
        cache.keep(key(3), _put(cache.cache_path(key(3))))
        assert evicted == [key(2).index_name()]
        cache.keep(key(4), _put(cache.cache_path(key(4))))
        assert key(1).index_name() not in evicted
    # the serve ended: a use, so 1 is now more recent than 3
    cache.keep(key(5), _put(cache.cache_path(key(5))))
    assert key(1).index_name() not in evicted
    assert registry.lookup(key(1).index_name()) is not None


def test_the_index_survives_a_restart_with_its_order(tmp_path: Path) -> None:
    clock = FakeClock()
    registry, cache, _ = _open(tmp_path, clock=clock)
    for i in (1, 2):
        cache.keep(
            key(i), _put(cache.cache_path(key(i))), piece_size=50, piece_hashes={1: "a" * 64}
        )
    with registry.pinned(key(1).index_name()):
        pass  # 1 served: now 2 is the least recently used
    cache.close()  # the node stops
    registry, cache, evicted = _open(tmp_path, clock=clock)
    held = registry.lookup(key(1).index_name())
    assert held is not None
    assert held.piece_hashes == {1: "a" * 64}
    assert registry.lookup(key(2).index_name()) is not None
    cache.keep(key(3), _put(cache.cache_path(key(3))))
    assert evicted == [key(2).index_name()]


def test_a_garbage_index_is_ignored_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry, cache, _ = _open(tmp_path)
    cache.keep(key(1), _put(cache.cache_path(key(1))))
    (tmp_path / "state" / STATE_NAME).write_bytes(b"\x00{not json")
    caplog.set_level(logging.WARNING, logger="swarmget.node.share_cache")
    registry, _, _ = _open(tmp_path)
    assert registry.names() == []
    assert any("ignoring its index" in r.getMessage() for r in caplog.records)


def _rewrite_entry(tmp_path: Path, **changes: object) -> None:
    index = tmp_path / "state" / STATE_NAME
    data = json.loads(index.read_bytes())
    data["entries"][0].update(changes)
    index.write_text(json.dumps(data))


def test_an_index_entry_pointing_outside_the_nodes_directories_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, cache, _ = _open(tmp_path)
    cache.keep(key(1), _put(tmp_path / "dl" / "one.bin"))
    outside = _put(tmp_path / "elsewhere" / "one.bin")
    _rewrite_entry(tmp_path, path=str(outside))
    caplog.set_level(logging.WARNING, logger="swarmget.node.share_cache")
    registry, _, _ = _open(tmp_path)
    assert registry.names() == []
    assert any("outside" in r.getMessage() for r in caplog.records)


def test_a_symlink_in_the_cache_directory_is_never_followed(tmp_path: Path) -> None:
    _, cache, _ = _open(tmp_path)
    path = _put(cache.cache_path(key(1)))
    cache.keep(key(1), path)
    target = _put(tmp_path / "elsewhere" / "secret")
    fingerprint = list(
        json.loads((tmp_path / "state" / STATE_NAME).read_bytes())["entries"][0]["fingerprint"]
    )
    path.unlink()
    path.symlink_to(target)
    st = target.stat()
    fingerprint[:2] = [st.st_dev, st.st_ino]  # even an index that names the target's inode
    _rewrite_entry(tmp_path, fingerprint=fingerprint)
    registry, cache, _ = _open(tmp_path)
    assert registry.names() == []
    assert not cache.keep(key(1), path)  # nor kept anew through the link
    assert target.exists()


def test_a_strangers_file_in_the_cache_directory_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, cache, _ = _open(tmp_path)
    stranger = _put(cache.cache_path(key(1)))
    os.chown(stranger, 4321, 4321)  # the tests run as root: another user's file
    caplog.set_level(logging.WARNING, logger="swarmget.node.share_cache")
    registry, cache, _ = _open(tmp_path)
    assert registry.names() == []
    assert any("not in its index" in r.getMessage() for r in caplog.records)
    assert not cache.keep(key(1), stranger)
    assert registry.names() == []


def test_a_file_changed_while_the_node_was_stopped_is_dropped(tmp_path: Path) -> None:
    _, cache, _ = _open(tmp_path)
    path = _put(tmp_path / "dl" / "one.bin")
    cache.keep(key(1), path)
    path.write_bytes(os.urandom(SIZE))  # same size, new bytes (a new inode or mtime)
    registry, _, _ = _open(tmp_path)
    assert registry.names() == []


def test_budget_zero_keeps_nothing(tmp_path: Path) -> None:
    registry, cache, _ = _open(tmp_path, budget=0)
    assert not registry.sharing
    assert not cache.keep(key(1), _put(tmp_path / "dl" / "one.bin"))
    assert registry.names() == []


def test_a_file_outside_the_nodes_directories_needs_the_users_consent(tmp_path: Path) -> None:
    registry, cache, _ = _open(tmp_path)
    outside = _put(tmp_path / "saved-elsewhere" / "one.bin")
    assert not cache.keep(key(1), outside)
    assert not cache.keep(key(1), outside, user_asked=True)  # the node does not allow it
    cache.outputs = True  # swarmget node --share-output
    assert not cache.keep(key(1), outside)  # still: the user did not ask (get --share-output)
    assert cache.keep(key(1), outside, user_asked=True)
    assert registry.lookup(key(1).index_name()) is not None


def test_a_shared_output_is_restored_only_while_the_node_allows_it(tmp_path: Path) -> None:
    _, cache, _ = _open(tmp_path)
    cache.outputs = True
    outside = _put(tmp_path / "saved-elsewhere" / "one.bin")
    assert cache.keep(key(1), outside, user_asked=True)
    assert cache.keep(key(2), _put(tmp_path / "dl" / "two.bin"))
    cache.close()
    state = tmp_path / "state"
    registry = HoldingsRegistry([tmp_path / "dl", state / CACHE_DIR])
    again = ShareCache(state, registry, SharePolicy(250), clock=FakeClock(), outputs=True)
    again.load()  # restarted with --share-output: both
    assert registry.names() == sorted([key(1).index_name(), key(2).index_name()])
    registry = HoldingsRegistry([tmp_path / "dl", state / CACHE_DIR])
    without = ShareCache(state, registry, SharePolicy(250), clock=FakeClock())
    without.load()  # restarted without it: the output is dropped, never served
    assert registry.names() == [key(2).index_name()]
    assert not without.keeps(key(1).index_name())


def test_a_file_of_the_wrong_size_is_not_kept(tmp_path: Path) -> None:
    registry, cache, _ = _open(tmp_path)
    assert not cache.keep(key(1), _put(tmp_path / "dl" / "one.bin", SIZE - 1))
    assert registry.names() == []
