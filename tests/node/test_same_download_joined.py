"""A request for a download the node already runs (the same URL into the same output, the
same checks) follows that download instead of starting a second one that would fail on its
part file; another request into that output is refused, naming the download that writes
it. On a real node (in-process), its user API, a real origin."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from swarmget.core.digests import parse_checksum_spec
from swarmget.core.errors import WrongState
from swarmget.engine import DownloadSpec
from swarmget.node.daemon import Node
from swarmget.node.download_record import DownloadRecord
from swarmget.node.downloads import same_output, same_request
from swarmget.testing.origin import TestOrigin, open_test_origin

MiB = 1024 * 1024
SIZE = 3 * MiB
#: the ``api`` fixture of tests/node/conftest.py (``node``: the in-process node there)
UserApiCall = Callable[..., Awaitable[tuple[int, Any]]]


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", SIZE, seed=7)
        o.add_generated("g.bin", SIZE, seed=8)
        yield o


async def _ended(node: Node, download_id: str) -> DownloadRecord:
    record = node.downloads.records[download_id]
    assert record.task is not None
    await asyncio.wait_for(asyncio.shield(record.task), 60)
    return record


async def _check_done(
    node: Node, download_id: str, origin: TestOrigin, saved: str, served: str = "f.bin"
) -> None:
    """The download ended done, ``saved`` (in the download directory) holding ``served``."""
    record = await _ended(node, download_id)
    assert record.state == "done", record.error
    data = (node.download_dir / saved).read_bytes()
    assert hashlib.sha256(data).hexdigest() == origin.expected_sha256(served)


async def test_the_same_request_twice_is_one_download_followed_twice(
    node: Node, api: UserApiCall, origin: TestOrigin
) -> None:
    origin.configure(rate_per_conn=512 * 1024)  # (still running when asked again)
    body = {"url": origin.url("f.bin"), "output": "f.bin"}
    status, first = await api("POST", "/v1/downloads", body)
    assert (status, first["joined"]) == (201, False)
    # the same request (force aside: it says nothing while the file is being written)
    again = {**body, "checksums": [], "force": True}  # (force: nothing to replace yet)
    status, second = await api("POST", "/v1/downloads", again)
    assert (status, second["joined"], second["id"]) == (200, True, first["id"])
    assert list(node.downloads.records) == [first["id"]]
    origin.configure(rate_per_conn=None)
    await _check_done(node, first["id"], origin, "f.bin")
    assert origin.stats().bytes_by_file["f.bin"] <= SIZE * 1.05  # fetched once, not twice


async def test_a_paused_download_asked_again_resumes_and_is_followed(
    node: Node, api: UserApiCall, origin: TestOrigin
) -> None:
    origin.configure(rate_per_conn=256 * 1024)
    body = {"url": origin.url("f.bin"), "output": "sub/f.bin"}
    _, first = await api("POST", "/v1/downloads", body)
    await asyncio.sleep(0.3)
    status, _ = await api("POST", f"/v1/downloads/{first['id']}/pause")
    assert status == 200
    record = await _ended(node, first["id"])
    assert record.state == "paused"
    origin.configure(rate_per_conn=None)
    status, again = await api("POST", "/v1/downloads", body)
    assert (status, again["id"], again["joined"]) == (200, first["id"], True)
    await _check_done(node, first["id"], origin, "sub/f.bin")


async def test_another_request_into_the_same_output_is_refused_and_harms_nothing(
    node: Node, api: UserApiCall, origin: TestOrigin
) -> None:
    origin.configure(rate_per_conn=512 * 1024)
    body = {"url": origin.url("f.bin"), "output": "f.bin"}
    _, first = await api("POST", "/v1/downloads", body)
    digest = f"sha256:{origin.expected_sha256('f.bin')}"
    others = [
        {**body, "checksums": [digest]},  # the same file, checked another way
        {**body, "verify_sample": 0.0},
        {**body, "url": origin.url("g.bin")},  # another file, into the same name
    ]
    for other in others:
        status, refused = await api("POST", "/v1/downloads", other)
        assert status == 409, refused
        assert refused["code"] == WrongState.code
        assert first["id"] in refused["error"]
        assert f"swarmget cancel {first['id']}" in refused["error"]
    assert list(node.downloads.records) == [first["id"]]
    origin.configure(rate_per_conn=None)
    await _check_done(node, first["id"], origin, "f.bin")


async def test_other_files_into_the_same_directory_run_side_by_side(
    node: Node, api: UserApiCall, origin: TestOrigin
) -> None:
    """No output (the download directory: each URL names its own file) and other names:
    separate downloads, as before."""
    origin.configure(rate_per_conn=1024 * 1024)
    bodies = [
        {"url": origin.url("f.bin")},
        {"url": origin.url("g.bin")},
        {"url": origin.url("f.bin"), "output": "copy.bin"},
    ]
    ids = []
    for body in bodies:
        status, created = await api("POST", "/v1/downloads", body)
        assert (status, created["joined"]) == (201, False), created
        ids.append(created["id"])
    origin.configure(rate_per_conn=None)
    for download_id, (saved, served) in zip(
        ids, [("f.bin", "f.bin"), ("g.bin", "g.bin"), ("copy.bin", "f.bin")], strict=True
    ):
        await _check_done(node, download_id, origin, saved, served)


def _record(spec: DownloadSpec, helpers: tuple[str, ...] | None = None) -> DownloadRecord:
    return DownloadRecord(id="a", spec=spec, created=0.0, only_helpers=helpers)


def test_what_makes_the_same_request(tmp_path: Path) -> None:
    out = tmp_path / "f.bin"
    one, two = parse_checksum_spec("sha256:" + "0" * 64), parse_checksum_spec("md5:" + "1" * 32)
    base = DownloadSpec(url="https://e.example/f", output=out, checksums=(one, two))
    record = _record(base)
    same = DownloadSpec(url=base.url, output=out, checksums=(two, one), force=True)
    assert same_request(record, same, None)
    differing = [
        DownloadSpec(url="https://e.example/g", output=out, checksums=(one, two)),
        DownloadSpec(url=base.url, output=out, checksums=(one,)),
        DownloadSpec(url=base.url, output=out, checksums=(one, two), restart_if_changed=True),
        DownloadSpec(url=base.url, output=out, checksums=(one, two), verify_sample=0.5),
        DownloadSpec(url=base.url, output=out, checksums=(one, two), max_size=10),
    ]
    for spec in differing:
        assert not same_request(record, spec, None), spec
    assert not same_request(record, base, ("node-b",))
    assert same_request(_record(base, ("node-b",)), base, ("node-b",))


def test_what_makes_the_same_output(tmp_path: Path) -> None:
    here = DownloadSpec(url="https://e.example/f", output=tmp_path)  # a directory
    assert same_output(_record(here), DownloadSpec(url=here.url, output=tmp_path))
    assert not same_output(_record(here), DownloadSpec(url="https://e.example/g", output=tmp_path))
    file = DownloadSpec(url="https://e.example/f", output=tmp_path / "x.bin")
    assert same_output(_record(file), DownloadSpec(url="https://e.example/g", output=file.output))
    assert not same_output(_record(file), DownloadSpec(url=file.url, output=tmp_path / "y"))
    assert not same_output(_record(file), DownloadSpec(url=file.url))
