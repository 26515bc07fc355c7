"""The public Python API (issue #16): ``swarmget.download`` / ``download_async`` against a
real test origin on loopback, alone and through a running node (a ``swarmget node``
process), with progress callbacks and the CLI's errors and exit codes."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import swarmget
from swarmget.cli.app import exit_code_for
from swarmget.core import errors
from swarmget.engine import DownloadProgress
from swarmget.node.statefiles import NODE_FILE
from swarmget.testing.origin import MiB, TestOrigin, open_test_origin
from swarmget.testing.swarm import start_proc

SIZE = 3 * MiB + 17


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", SIZE, seed=16)
        yield o


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_api_is_the_package_s() -> None:
    assert swarmget.download is swarmget.api.download
    assert inspect.iscoroutinefunction(swarmget.download_async)
    assert issubclass(swarmget.ChecksumMismatch, swarmget.SwarmgetError)
    with pytest.raises(AttributeError):
        _ = swarmget.no_such_thing  # type: ignore[attr-defined]


def error_classes() -> list[type[errors.SwarmgetError]]:
    return [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.SwarmgetError)
    ]


@pytest.mark.parametrize("kind", error_classes(), ids=lambda c: c.__name__)
def test_every_error_carries_the_cli_s_exit_code(kind: type[errors.SwarmgetError]) -> None:
    exc = kind.__new__(kind)  # some take keyword arguments; the class decides the code
    assert exc.exit_code == exit_code_for(exc)


async def test_alone_progress_grows_to_the_size(origin: TestOrigin, tmp_path: Path) -> None:
    origin.configure(rate_per_ip=2 * MiB)  # ~1.5 s: several progress ticks
    seen: list[DownloadProgress] = []
    result = await swarmget.download_async(
        origin.url("f.bin"),
        tmp_path / "f.bin",
        checksum=f"sha256:{origin.expected_sha256('f.bin')}",
        use_node=False,
        progress=seen.append,
    )
    assert result.path == tmp_path / "f.bin"
    assert sha256(result.path) == origin.expected_sha256("f.bin")
    assert result.verified == ("sha256",)
    done = [p.done for p in seen]
    assert done == sorted(done)  # never goes back
    assert len(set(done)) >= 2  # and does go up
    assert done[-1] == SIZE  # the last call: the whole file


async def test_the_sync_twin(origin: TestOrigin, tmp_path: Path) -> None:
    """``download`` runs its own event loop: here in a thread, the origin serving in ours."""
    dest = tmp_path / "sync.bin"
    result = await asyncio.to_thread(
        swarmget.download, origin.url("f.bin"), str(dest), use_node=False, connections=2
    )
    assert result.size == SIZE
    assert sha256(dest) == origin.expected_sha256("f.bin")


async def test_the_sync_twin_refuses_to_block_a_running_loop(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="download_async"):
        swarmget.download("http://127.0.0.1:9/f", tmp_path / "f")


def test_the_sync_twin_has_the_async_parameters() -> None:
    """One parameter list: what ``help(swarmget.download)`` shows is ``download_async``'s."""
    sync, asynchronous = (
        inspect.signature(swarmget.download),
        inspect.signature(swarmget.download_async),
    )
    assert list(sync.parameters) == list(asynchronous.parameters)
    assert "connections" in sync.parameters
    assert swarmget.download.__name__ == "download"
    assert "asyncio.run" in (swarmget.download.__doc__ or "")


@pytest.mark.parametrize(
    ("url", "options", "error"),
    [
        ("ftp://example.org/f", {}, errors.InvalidURL),
        ("not a url", {}, errors.InvalidURL),
        ("http://127.0.0.1:9/f", {"checksum": "sha256:zz"}, errors.InvalidChecksum),
        ("http://127.0.0.1:9/f", {"headers": {"X-A": "1\nX-B: 2"}}, errors.UsageError),
        ("http://127.0.0.1:9/f", {"connections": 0}, errors.UsageError),
        ("http://127.0.0.1:9/f", {"verify_sample": 1.5}, errors.UsageError),
    ],
)
def test_a_bad_request_is_a_usage_error_with_exit_code_2(
    tmp_path: Path, url: str, options: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        swarmget.download(url, tmp_path / "f", use_node=False, **options)  # type: ignore[arg-type]
    assert isinstance(caught.value, swarmget.UsageError)
    assert caught.value.exit_code == 2
    assert not (tmp_path / "f").exists()


async def test_a_missing_file_is_a_download_error_with_exit_code_3(
    origin: TestOrigin, tmp_path: Path
) -> None:
    with pytest.raises(swarmget.DownloadError) as caught:
        await swarmget.download_async(origin.url("nope.bin"), tmp_path / "f", use_node=False)
    assert caught.value.exit_code == 3


async def test_a_checksum_mismatch_raises_with_exit_code_5(
    origin: TestOrigin, tmp_path: Path
) -> None:
    with pytest.raises(swarmget.ChecksumMismatch) as caught:
        await swarmget.download_async(
            origin.url("f.bin"), tmp_path / "f", checksum="sha256:" + "0" * 64, use_node=False
        )
    assert caught.value.exit_code == 5


async def test_an_existing_destination_needs_force(origin: TestOrigin, tmp_path: Path) -> None:
    dest = tmp_path / "f"
    dest.write_bytes(b"mine")
    with pytest.raises(errors.DestinationExists) as caught:
        await swarmget.download_async(origin.url("f.bin"), dest, use_node=False)
    assert caught.value.exit_code == 2
    assert dest.read_bytes() == b"mine"
    await swarmget.download_async(origin.url("f.bin"), dest, use_node=False, force=True)
    assert sha256(dest) == origin.expected_sha256("f.bin")


async def test_through_a_running_node(origin: TestOrigin, tmp_path: Path) -> None:
    """A node runs in ``state_dir`` (its own process, on 127.0.0.3): the API hands it the
    download, and every byte reaches the origin from the node's address."""
    state, downloads = tmp_path / "state", tmp_path / "downloads"
    env = {**os.environ, "SWARMGET_SECRET": "n" * 32}
    args = [
        "node", "--listen", "127.0.0.3", "--port", "0", "--api-port", "0",
        "--state-dir", str(state), "--download-dir", str(downloads),
        "--allow-private-origins", "127.0.0.0/8",
    ]  # fmt: skip
    node = await start_proc(args, tmp_path / "node.log", env)
    try:
        for _ in range(100):  # written just after the announcement
            if (state / NODE_FILE).exists():
                break
            await asyncio.sleep(0.05)
        seen: list[DownloadProgress] = []
        result = await swarmget.download_async(
            origin.url("f.bin"), downloads / "f.bin", state_dir=state, progress=seen.append
        )
    finally:
        await node.stop()
    assert sha256(downloads / "f.bin") == origin.expected_sha256("f.bin")
    assert result.size == SIZE
    assert set(origin.stats().bytes_by_ip) == {"127.0.0.3"}  # the node fetched it
    assert seen
    assert seen[-1].done == SIZE
