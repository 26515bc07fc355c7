"""A signed download URL's query values never reach the node's log, its user API's views or
its portal (issue #12); the origin still gets the whole URL (the download works)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp

from swarmget.testing.origin import open_test_origin
from swarmget.testing.swarm import start_proc

SIG_OK = "sigvalueOK1234567890"
SIG_BAD = "sigvalueBAD0987654321"


async def test_query_values_stay_out_of_logs_views_and_the_portal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    args = [
        "node", "--listen", "127.0.0.1", "--port", "0", "--api-port", "0",
        "--state-dir", str(state), "--download-dir", str(tmp_path / "dl"),
    ]  # fmt: skip
    env = {**os.environ, "SWARMGET_SECRET": "s" * 32, "PYTHONUNBUFFERED": "1"}
    async with open_test_origin() as origin:
        origin.add_generated("f.bin", 300_000, seed=3)
        node = await start_proc(args, tmp_path / "node.log", env)
        try:
            api = str(node.info["api_url"])
            token = (state / "api-token").read_text().strip()
            auth = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession() as s:
                seen: list[str] = []
                for url in (
                    f"{origin.url('f.bin')}?X-Sig={SIG_OK}&exp=9",
                    f"{origin.base_url}/files/missing.bin?X-Sig={SIG_BAD}",
                ):
                    body = {"url": url, "output": url.rsplit("/", 1)[1].split("?")[0]}
                    async with s.post(f"{api}/v1/downloads", json=body, headers=auth) as r:
                        assert r.status == 201
                        made = await r.json()
                    seen.append(json.dumps(made))
                    final = await _finished(s, api, auth, made["id"])
                    seen.append(json.dumps(final))
                assert json.loads(seen[1])["state"] == "done"
                assert json.loads(seen[3])["state"] == "failed"
                async with s.get(f"{api}/v1/downloads", headers=auth) as r:
                    seen.append(await r.text())
                for text in seen:  # the user API's views
                    assert SIG_OK not in text
                    assert SIG_BAD not in text
                async with s.post(f"{api}/v1/portal-link", headers=auth) as r:
                    link = (await r.json())["url"]
                async with s.get(link) as r:  # logs in (cookie), lands on the list
                    seen.append(await r.text())
                for made_json in (seen[0], seen[2]):
                    download_id = json.loads(made_json)["id"]
                    async with s.get(f"{api}/portal/downloads/{download_id}") as r:
                        assert r.status == 200
                        seen.append(await r.text())
        finally:
            await node.stop()
    assert (tmp_path / "dl" / "f.bin").read_bytes() == origin.content("f.bin")
    log = (tmp_path / "node.log").read_text()
    assert "X-Sig=***" in log  # the download is still recognisable
    for text in [*seen, log]:
        assert SIG_OK not in text
        assert SIG_BAD not in text


async def _finished(
    s: aiohttp.ClientSession, api: str, auth: dict[str, str], download_id: str
) -> dict[str, object]:
    for _ in range(300):  # at most ~30 s
        async with s.get(f"{api}/v1/downloads/{download_id}", headers=auth) as r:
            data: dict[str, object] = await r.json()
        if data["state"] not in ("starting", "running"):
            return data
        await asyncio.sleep(0.1)
    raise AssertionError(f"download {download_id} did not finish")
