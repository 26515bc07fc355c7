"""Fetch once per LAN (#15), its faults and its trust, between real ``swarmget node``
processes on 127.0.0.x (``--share-downloads``): requesters that start together fetch the
file from the origin about once; the first requester killed (SIGKILL) mid-way, the others
finish without starting over; a holder killed mid-transfer, the requester takes the rest
elsewhere; a holder whose kept file was corrupted behind its back (same inode, size and
mtime: its own fingerprint check cannot tell) is caught by the requester's sampling,
banned and reported, and the file still comes out right. The same cases on in-process
fakes: ``tests/engine/test_group_fetch.py``."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.core.lifecycle import still_going
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import NodeApi, open_local_swarm

KiB = 1024
MiB = 1024 * KiB
SHARE = ["--share-downloads"]
#: seconds any one wait of a test may take (a test runs in ~5-10 s on a loaded laptop)
LIMIT = 30.0
FLIP = bytes(255 - b for b in range(256))  # every byte to another
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    # capped per client IP: each node's origin link is a slow internet link of its own
    async with open_test_origin(rate_per_ip=2 * MiB) as o:
        yield o


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _view(api: NodeApi, download_id: str) -> dict[str, Any]:
    status, view = await api.call("GET", f"/v1/downloads/{download_id}?events=0")
    assert status == 200, view
    assert isinstance(view, dict)
    return view


async def _until(
    api: NodeApi, download_id: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the download's view until ``ready`` says so (it must still be running then)."""
    async with asyncio.timeout(LIMIT):
        while True:
            view = await _view(api, download_id)
            assert still_going(view), f"ended before the fault was injected: {view}"
            if view.get("progress") and ready(view):
                return view
            await asyncio.sleep(0.05)


async def _done(api: NodeApi, download_id: str) -> dict[str, Any]:
    view = await api.wait(download_id, LIMIT)
    assert view["state"] == "done", view.get("error")
    return view


def _received(view: dict[str, Any], source_id: str) -> int:
    """Bytes the download received from one source so far (0: not a source)."""
    sources = {s["id"]: s for s in view["progress"]["sources"]}
    return int(sources[source_id]["received"]) if source_id in sources else 0


def _lan(view: dict[str, Any]) -> int:
    return int(view["progress"]["by_source"]["lan"])


async def test_requesters_starting_together_fetch_the_file_from_the_origin_about_once(
    origin: TestOrigin, tmp_path: Path
) -> None:
    size = 12 * MiB + 7  # ~2 s over three 2 MiB/s links, 6 s over one
    origin.add_generated("f.bin", size, seed=31)
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 3, node_extra=SHARE, hub_ttl=6) as swarm,
    ):
        apis = [NodeApi(session, node) for node in swarm.nodes]
        await asyncio.gather(*(api.until_peers(2) for api in apis))
        url = origin.url("f.bin")
        ids = await asyncio.gather(*(a.start(url, output=f"{i}.bin") for i, a in enumerate(apis)))
        views = await asyncio.gather(*(_done(a, d) for a, d in zip(apis, ids, strict=True)))
        served = origin.stats().bytes_by_file["f.bin"]  # to every client, the origin's count
    for node, view in zip(swarm.nodes, views, strict=True):
        assert _sha(node.download_dir / f"{node.index}.bin") == origin.expected_sha256("f.bin")
        assert view["result"]["sharing"]["joined"] is True
    # one copy from the origin, give or take what cut streams had in flight, plus the
    # windows fetched to check the LAN holders' bytes; each node had most of it over the LAN
    checks = sum(view["progress"]["by_source"]["check"] for view in views)
    assert served <= 1.10 * size + checks, (served, checks)
    assert sum(_lan(view) for view in views) >= size


async def test_the_first_requester_killed_mid_way_the_others_finish_without_starting_over(
    origin: TestOrigin, tmp_path: Path
) -> None:
    size = 12 * MiB + 7
    origin.add_generated("f.bin", size, seed=32)
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 3, node_extra=SHARE, hub_ttl=3) as swarm,
    ):
        first, *others = [NodeApi(session, node) for node in swarm.nodes]
        await asyncio.gather(*(api.until_peers(2) for api in (first, *others)))
        url = origin.url("f.bin")
        first_id = await first.start(url, output="0.bin")
        await _until(first, first_id, lambda v: v["progress"]["done"] >= 2 * MiB)
        ids = [await api.start(url, output=f"{i}.bin") for i, api in enumerate(others, 1)]
        running = list(zip(others, ids, strict=True))
        the_first = f"lan:{swarm.node(0).node_id}"
        async with asyncio.timeout(LIMIT):  # until they took bytes it verified, over the LAN
            while sum([_received(await _view(a, d), the_first) for a, d in running]) < 256 * KiB:
                await asyncio.sleep(0.05)
        assert still_going(await _view(first, first_id))  # the kill comes mid-way
        swarm.node(0).proc.signal(signal.SIGKILL)
        views = await asyncio.gather(*(_done(a, d) for a, d in running))
        served = origin.stats().bytes_by_file["f.bin"]
    for node, view in zip(swarm.nodes[1:], views, strict=True):
        assert _sha(node.download_dir / f"{node.index}.bin") == origin.expected_sha256("f.bin")
        assert view["result"]["sharing"]["joined"] is True
    # nobody started over: had the survivors fetched the file each on its own (or again
    # from the start once the first died), the origin would have sent two copies and more
    assert served < 2 * size, served
    assert sum(_lan(view) for view in views) >= size // 2  # what one fetched, the other took


async def test_a_holder_killed_mid_transfer_the_requester_takes_the_rest_elsewhere(
    origin: TestOrigin, tmp_path: Path
) -> None:
    size = 6 * MiB + 7
    origin.add_generated("f.bin", size, seed=33)
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 3, node_extra=SHARE, hub_ttl=3) as swarm,
    ):
        holders = [NodeApi(session, node) for node in swarm.nodes[:2]]
        requester = NodeApi(session, swarm.node(2))
        await asyncio.gather(*(api.until_peers(2) for api in (*holders, requester)))
        url = origin.url("f.bin")
        for i, api in enumerate(holders):  # the second takes it from the first: quick
            await _done(api, await api.start(url, output=f"{i}.bin"))
            await api.until_sharing("kept_files", 1)
        for api in holders:  # LAN serving is under the helper rate limit: ~1.5 s for both
            status, view = await api.call("PUT", "/v1/settings", {"rate_limit": 2 * MiB})
            assert status == 200, view
        victim, survivor = (f"lan:{node.node_id}" for node in swarm.nodes[:2])
        download_id = await requester.start(url, output="2.bin")
        at_kill = await _until(
            requester,
            download_id,
            lambda v: _received(v, victim) >= 512 * KiB and _received(v, survivor) > 0,
        )
        swarm.node(0).proc.signal(signal.SIGKILL)
        view = await _done(requester, download_id)
    assert _sha(swarm.node(2).download_dir / "2.bin") == origin.expected_sha256("f.bin")
    sharing = view["result"]["sharing"]
    assert sharing["holders_used"] is True
    # both holders were streaming when one died; what it had not sent came from elsewhere
    assert _received(view, victim) < size - 2 * MiB
    assert _received(view, survivor) > _received(at_kill, survivor)
    assert sharing["banned_holders"] == []  # it failed, it did not lie


async def test_a_holder_serving_corrupted_bytes_is_banned_and_the_file_comes_out_right(
    origin: TestOrigin, tmp_path: Path
) -> None:
    size = 6 * MiB + 7
    origin.add_generated("f.bin", size, seed=34)
    async with (
        aiohttp.ClientSession() as session,
        open_local_swarm(tmp_path, 2, node_extra=SHARE, hub_ttl=6) as swarm,
    ):
        holder, requester = NodeApi(session, swarm.node(0)), NodeApi(session, swarm.node(1))
        url = origin.url("f.bin")
        await _done(holder, await holder.start(url, output="0.bin"))
        await holder.until_sharing("kept_files", 1)
        await asyncio.to_thread(_corrupt_in_place, swarm.node(0).download_dir / "0.bin")
        view = await _done(requester, await requester.start(url, output="1.bin"))
        served = (await holder.sharing())["lan_bytes_served"]
    assert _sha(swarm.node(1).download_dir / "1.bin") == origin.expected_sha256("f.bin")
    sharing = view["result"]["sharing"]
    assert served > 0  # the holder's own checks did not notice: it served its bad bytes
    assert sharing["lan_bytes"] > 0  # ... and the requester took some before it was caught
    assert sharing["holder_check"] == "sampled"
    assert sharing["banned_holders"] == [swarm.node(0).node_id]


def _corrupt_in_place(path: Path) -> None:
    """Flip every byte of ``path`` in place (the same inode and size), then give it back
    its times: the holder's fingerprint of its kept file (device, inode, size, mtime,
    ``node.holdings.fingerprint_of``) still matches, so it serves what is there now.

    Every byte, not a stretch in the middle: the requester checks a LAN holder's stream by
    comparing one window of it (at least 4 KiB, 256 KiB for a holder's first stream; at
    an offset it draws at random) with the origin, so a stream with a bad stretch and good
    bytes may pass. With every byte bad, whatever window is drawn differs: the first
    stream checked catches the holder, and no bad byte can stay in the file."""
    st = path.stat()
    with path.open("r+b") as f:
        offset = 0
        while chunk := f.read(MiB):
            f.seek(offset)
            f.write(chunk.translate(FLIP))
            offset += len(chunk)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    )
