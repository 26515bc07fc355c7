"""``swarmget get`` as a real process: exit codes, JSON output, SIGKILL and resume, full disk."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from swarmget import __version__
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.testing.cli import CLI, run_cli
from swarmget.testing.origin import TestOrigin, open_test_origin

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("f.bin", 3 * MiB + 1, seed=11)
        yield o


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_version() -> None:
    code, out, _ = await run_cli("--version")
    assert code == 0
    assert __version__ in out


async def test_json_result(origin: TestOrigin, tmp_path: Path) -> None:
    digest = origin.expected_sha256("f.bin")
    code, out, _ = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path / "f"), "--json", "--checksum",
        f"sha256:{digest}",
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert result["ok"] is True
    assert result["size"] == 3 * MiB + 1
    assert result["verified"] == ["sha256"]
    assert sha256(tmp_path / "f") == digest


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ftp://example.com/x"], 2, "not an http(s) URL"),
        (["http://"], 2, "invalid_url"),
        (["http://127.0.0.1:9/x", "--checksum", "crc32:00"], 2, "unknown checksum algorithm"),
        (["http://127.0.0.1:9/x", "--checksum", "sha256:abc"], 2, "invalid_checksum"),
        (["http://127.0.0.1:9/x", "-H", "no colon here"], 2, "Name: value"),
    ],
)
async def test_bad_input_is_a_usage_error(
    args: list[str], code: int, message: str, tmp_path: Path
) -> None:
    rc, out, err = await run_cli("get", *args, "-o", str(tmp_path / "x"))
    assert rc == code
    assert message in err
    assert list(tmp_path.iterdir()) == []


async def test_json_error_output(origin: TestOrigin, tmp_path: Path) -> None:
    rc, out, _ = await run_cli("get", origin.url("missing"), "-o", str(tmp_path / "x"), "--json")
    assert rc == 3
    error = json.loads(out)
    assert error == {"ok": False, "error": "origin_unusable", "message": error["message"]}
    assert "404" in error["message"]


async def test_checksum_mismatch_exit_code(origin: TestOrigin, tmp_path: Path) -> None:
    rc, _, err = await run_cli(
        "get", origin.url("f.bin"), "-o", str(tmp_path / "f"), "--checksum", "md5:" + "0" * 32
    )
    assert rc == 5
    assert "checksum mismatch" in err
    assert (tmp_path / "f.part").exists()
    assert not (tmp_path / "f").exists()


async def test_existing_destination_exit_code(origin: TestOrigin, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("keep me")
    rc, _, err = await run_cli("get", origin.url("f.bin"), "-o", str(tmp_path / "f"))
    assert rc == 2
    assert "--force" in err
    assert (tmp_path / "f").read_text() == "keep me"


def _written(control: Path) -> RangeSet:
    try:
        return RangeSet.from_pairs(json.loads(control.read_text())["written"])
    except (OSError, ValueError, KeyError):
        return RangeSet()


async def test_sigkill_then_resume_refetches_only_what_was_in_flight(tmp_path: Path) -> None:
    size = 24 * MiB
    async with open_test_origin() as origin:
        origin.add_generated("big.bin", size, seed=5)
        origin.configure(rate_per_conn=1.5 * MiB)
        dest = tmp_path / "big.bin"
        proc = await asyncio.create_subprocess_exec(
            *CLI, "get", origin.url("big.bin"), "-o", str(dest), "-q",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        control = tmp_path / "big.bin.part.json"
        for _ in range(300):  # until a checkpoint records a third of the file (<= 30 s)
            if _written(control).total() >= size // 3:
                break
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        saved = _written(control)
        assert 0 < saved.total() < size, "the kill must land mid-download"

        origin.reset()  # unthrottled, counters zeroed
        rc, out, _ = await run_cli("get", origin.url("big.bin"), "-o", str(dest), "--json")
        assert rc == 0
        result = json.loads(out)
        assert sha256(dest) == origin.expected_sha256("big.bin")
        assert result["resumed_bytes"] == saved.total()
        missing = size - saved.total()
        claimed = sum(s["claimed"] for s in result["sources"])
        assert claimed == missing  # exactly the ranges not on disk were written again
        requested = [r for r in origin.stats().served if r.status == 206]
        assert requested
        for r in requested:  # and the origin was never asked for a byte already on disk
            assert not saved.overlaps(ByteRange(r.start, r.end_exclusive)), r
        assert origin.stats().bytes_total >= result["fetched_bytes"] >= missing


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_full_disk_is_a_clear_error_and_resumable(tmp_path: Path) -> None:
    async with open_test_origin() as origin:
        origin.add_generated("big.bin", 6 * MiB, seed=1)
        with tiny_filesystem(tmp_path / "small", "4m") as disk:
            rc, _, err = await run_cli("get", origin.url("big.bin"), "-o", str(disk / "f"))
            assert rc == 6
            assert "disk space" in err
            assert not (disk / "f").exists()
            subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
            rc, _, err = await run_cli("get", origin.url("big.bin"), "-o", str(disk / "f"))
            assert rc == 0, err
            assert sha256(disk / "f") == origin.expected_sha256("big.bin")


async def test_an_http_download_imports_neither_aiohttp_nor_the_node_client(
    origin: TestOrigin, tmp_path: Path
) -> None:
    """Start-up time: the raw client does every request of an http:// download, so the CLI
    never pays for importing aiohttp (~0.15 s here); an https hop or a chunked answer would
    import it on demand. The probe is checked too: ``-X importtime`` lists every import."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", "-m", "swarmget.cli", "get", origin.url("f.bin"),
        "-o", str(tmp_path / "f"), "--json",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert json.loads(out)["ok"] is True
    imported = {line.split("|")[-1].strip() for line in err.decode().splitlines()}
    assert "swarmget.net.rawhttp" in imported  # the listing is what we think it is
    assert not {name for name in imported if name.split(".")[0] == "aiohttp"}
    # with no node running, nor the node's client and its models (pydantic: ~0.1 s)
    assert not {"swarmget.run.remote", "pydantic", "cryptography"} & imported
    assert sha256(tmp_path / "f") == origin.expected_sha256("f.bin")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl; .ci/run installs it if missing)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_origin(tls_files: tuple[Path, Path]) -> AsyncIterator[TestOrigin]:
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with open_test_origin(ssl_context=context) as o:
        o.add_generated("f.bin", 3 * MiB + 1, seed=11)
        yield o


async def _get_with_env(url: str, out: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", "-m", "swarmget.cli", "get", url, "-o", str(out),
        "--json", "--no-node",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def test_an_https_origin_goes_through_aiohttp(
    tls_origin: TestOrigin, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """https is aiohttp's (the raw client is plain HTTP only): the session it needs is made
    on demand, and the certificate is verified (trusted here through SSL_CERT_FILE)."""
    url = tls_origin.url("f.bin")
    assert url.startswith("https://")
    code, out, err = await _get_with_env(url, tmp_path / "f", {"SSL_CERT_FILE": str(tls_files[0])})
    assert code == 0, err[-2000:]
    assert json.loads(out)["ok"] is True
    assert sha256(tmp_path / "f") == tls_origin.expected_sha256("f.bin")
    imported = {line.split("|")[-1].strip() for line in err.splitlines()}
    assert "aiohttp.client" in imported


async def test_an_untrusted_certificate_is_refused(tls_origin: TestOrigin, tmp_path: Path) -> None:
    code, out, err = await _get_with_env(tls_origin.url("f.bin"), tmp_path / "f", {})
    assert code == 3, err[-2000:]
    assert "certificate verification failed" in json.loads(out)["message"]
    assert tls_origin.stats().bytes_total == 0
    assert not (tmp_path / "f").exists()
