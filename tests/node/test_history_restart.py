"""A node's downloads outlive the node (issue #16, "History is lost on every restart"): a real
node process is killed (SIGKILL) and started again on the same state directory; its list,
filters, pause and resume, removal and "clear finished" are driven through the user API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmget.node.history import HISTORY_FILE
from swarmget.testing.origin import TestOrigin, open_test_origin
from swarmget.testing.swarm import Proc, start_proc

MiB = 1024 * 1024
CLI = [sys.executable, "-m", "swarmget.cli"]
ENV = {**os.environ, "SWARMGET_SECRET": "h" * 32, "PYTHONUNBUFFERED": "1"}
pytestmark = pytest.mark.slow


@pytest.fixture
async def origin() -> AsyncIterator[TestOrigin]:
    async with open_test_origin() as o:
        o.add_generated("small.bin", 256 * 1024, seed=1)
        o.add_generated("slow.bin", 4 * MiB, seed=2)
        yield o


class Api:
    """A node process and a client of its user API."""

    def __init__(self, tmp_path: Path, session: aiohttp.ClientSession) -> None:
        self.tmp_path = tmp_path
        self.session = session
        self.proc: Proc | None = None

    @property
    def state(self) -> Path:
        return self.tmp_path / "state"

    @property
    def downloads(self) -> Path:
        return self.tmp_path / "dl"

    async def start(self) -> None:
        args = [
            "node", "--listen", "127.0.0.1", "--port", "0", "--api-port", "0",
            "--state-dir", str(self.state), "--download-dir", str(self.downloads),
        ]  # fmt: skip
        self.proc = await start_proc(args, self.tmp_path / "node.log", ENV)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.signal(signal.SIGKILL)
        await self.proc.process.wait()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.proc is not None
        token = (self.state / "api-token").read_text().strip()
        async with self.session.request(
            method,
            str(self.proc.info["api_url"]) + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def start_download(self, url: str, output: str) -> str:
        status, data = await self.call("POST", "/v1/downloads", {"url": url, "output": output})
        assert status == 201, data
        return str(data["id"])

    async def wait_state(self, download_id: str, *states: str) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while True:
                _, data = await self.call("GET", f"/v1/downloads/{download_id}")
                if data["state"] in states:
                    return dict(data)
                await asyncio.sleep(0.05)

    async def listed(self, query: str = "") -> dict[str, str]:
        status, data = await self.call("GET", f"/v1/downloads{query}")
        assert status == 200, data
        return {d["id"]: d["state"] for d in data["downloads"]}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        a = Api(tmp_path, session)
        await a.start()
        try:
            yield a
        finally:
            if a.proc is not None:
                await a.proc.stop()


async def test_history_pause_and_resume_survive_a_killed_node(api: Api, origin: TestOrigin) -> None:
    done = await api.start_download(origin.url("small.bin"), "small.bin")
    await api.wait_state(done, "done")
    failed = await api.start_download(origin.url("missing.bin"), "missing.bin")
    await api.wait_state(failed, "failed")
    origin.configure(rate_per_conn=64 * 1024)  # slow enough to pause in the middle
    paused = await api.start_download(origin.url("slow.bin"), "slow.bin")
    async with asyncio.timeout(30):
        while (await api.wait_state(paused, "running")).get("progress", {}).get("done", 0) < 1:
            await asyncio.sleep(0.05)
    status, body = await api.call("POST", f"/v1/downloads/{paused}/pause")
    assert status == 200, body
    assert body["id"] == paused
    await api.wait_state(paused, "paused")
    assert (api.downloads / "slow.bin.part").exists()  # the partial data stays
    status, body = await api.call("POST", f"/v1/downloads/{paused}/pause")
    assert (status, body["code"]) == (409, "wrong_state")

    await api.kill()
    await api.start()  # the same state directory, a new process
    mode = (api.state / HISTORY_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600

    assert await api.listed() == {done: "done", failed: "failed", paused: "paused"}
    assert await api.listed("?state=done") == {done: "done"}
    assert await api.listed("?state=failed,paused") == {failed: "failed", paused: "paused"}
    assert await api.listed("?q=SLOW.bin") == {paused: "paused"}
    assert await api.listed("?since=2999-01-01") == {}
    assert await api.listed("?before=2999-01-01") == await api.listed()
    status, body = await api.call("GET", "/v1/downloads?state=sleeping")
    assert (status, body["code"]) == (400, "bad_request")
    status, body = await api.call("GET", "/v1/downloads?colour=red")
    assert (status, body["code"]) == (400, "bad_request")

    # resuming goes on from the verified bytes of the part file, under the same id
    origin.configure(rate_per_conn=None)
    status, body = await api.call("POST", f"/v1/downloads/{paused}/resume")
    assert status == 200, body
    finished = await api.wait_state(paused, "done", "failed")
    assert finished["state"] == "done", finished
    assert finished["result"]["resumed_bytes"] > 0
    assert (api.downloads / "slow.bin").read_bytes() == origin.content("slow.bin")
    assert list((await api.listed()).keys()).count(paused) == 1  # one row, not two

    # remove (and delete the file), then clear the finished ones
    status, body = await api.call("POST", f"/v1/downloads/{done}/remove", {"delete_file": True})
    assert status == 200, body
    assert body["deleted"] == ["small.bin"]
    assert not (api.downloads / "small.bin").exists()
    status, body = await api.call("POST", "/v1/downloads/nope/remove", {})
    assert status == 404
    status, body = await api.call("POST", f"/v1/downloads/{failed}/remove", {"shred": True})
    assert (status, body["code"]) == (400, "bad_request")
    status, body = await api.call("POST", "/v1/downloads/clear-finished")
    assert (status, body) == (200, {"removed": 2})
    assert (api.downloads / "slow.bin").exists()  # clearing forgets, it does not delete

    await api.kill()
    await api.start()
    assert await api.listed() == {}


async def test_a_running_download_cannot_be_removed_and_resume_needs_a_paused_one(
    api: Api, origin: TestOrigin
) -> None:
    origin.configure(rate_per_conn=64 * 1024)
    running = await api.start_download(origin.url("slow.bin"), "slow.bin")
    await api.wait_state(running, "running")
    status, body = await api.call("POST", f"/v1/downloads/{running}/remove", {})
    assert (status, body["code"]) == (409, "wrong_state")
    status, body = await api.call("POST", f"/v1/downloads/{running}/resume")
    assert (status, body["code"]) == (409, "wrong_state")
    status, body = await api.call("POST", f"/v1/downloads/{running}/retry")
    assert (status, body["code"]) == (409, "wrong_state")
    await api.call("POST", f"/v1/downloads/{running}/pause")
    await api.wait_state(running, "paused")
    status, _ = await api.call("DELETE", f"/v1/downloads/{running}")  # cancel a paused one
    assert status == 200
    cancelled = await api.wait_state(running, "cancelled")
    assert cancelled["error"]["code"] == "cancelled"
    assert (api.downloads / "slow.bin.part").exists()  # kept on cancel, as always


async def swarmget(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_swarmget_pause_and_resume_commands(api: Api, origin: TestOrigin) -> None:
    origin.configure(rate_per_conn=64 * 1024)
    download_id = await api.start_download(origin.url("slow.bin"), "slow.bin")
    await api.wait_state(download_id, "running")
    state = str(api.state)
    code, out, err = await swarmget("pause", download_id, "--state-dir", state)
    assert code == 0, err
    assert out.startswith(f"{download_id}: ")
    await api.wait_state(download_id, "paused")
    code, out, err = await swarmget("pause", download_id, "--state-dir", state)
    assert code == 2  # a usage error that names the state
    assert "paused" in err
    assert "cannot be paused" in err
    origin.configure(rate_per_conn=None)
    code, out, err = await swarmget("resume", download_id, "--state-dir", state, "--json")
    assert code == 0, err
    assert json.loads(out)["id"] == download_id
    assert (await api.wait_state(download_id, "done", "failed"))["state"] == "done"
    code, _, err = await swarmget("resume", "nosuchid", "--state-dir", state)
    assert code == 2
    assert "no such download" in err
