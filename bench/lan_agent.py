"""Drive one download through a node's local user API, from inside the node's namespace.

The user API listens on 127.0.0.1 of the node's network namespace, so the benchmark runs
this small stdlib-only script there (``ip netns exec sgb-h0 python lan_agent.py ...``). It

1. waits until the node sees every helper it should use (``GET /v1/peers``: they registered
   with the hub),
2. asks for the download (``POST /v1/downloads`` with the helpers to use and the sha256),
3. watches for the verified file to appear in the node's download directory (the node renames
   ``NAME.part`` to ``NAME`` once the checksum matched): checked every 5 ms, so that moment is
   the "request to verified file" time to within 5 ms, and the node spends no CPU on being
   watched. Every 0.5 s it asks the node whether the download failed; with ``--progress``
   it also asks for the bytes done every 0.1 s and prints them (the fault experiments),
4. prints the final ``GET /v1/downloads/{id}``.

With ``--wait-only`` it stops after step 1 (the ``user`` experiment then times ``swarmget get``
itself).

One keep-alive HTTP connection carries all the calls.

Output: one JSON object per line on stdout, ``{"event": "ready" | "started" | "progress" |
"end", "t": seconds since the POST, ...}``. Exit code 0 when the download is done, 1 if it
failed or timed out, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FILE_POLL = 0.005
STATE_POLL = 0.5
PROGRESS_POLL = 0.1
PEERS_WAIT = 30.0
DONE_WAIT = 5.0  # from the file in place to the node saying "done"


class Api:
    """Calls to one node's user API over one keep-alive connection."""

    def __init__(self, base: str, token: str) -> None:
        url = urllib.parse.urlsplit(base)
        self._conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):  # the server may have closed an idle keep-alive connection
            try:
                self._conn.request(method, path, body=data, headers=self._headers)
                resp = self._conn.getresponse()
                return resp.status, json.loads(resp.read() or b"null")
            except (http.client.HTTPException, ConnectionError):
                self._conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")


def emit(event: str, t: float, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": round(t, 4), **fields}), flush=True)


def wait_for_peers(api: Api, wanted: Sequence[str], limit: float) -> list[str]:
    deadline = time.monotonic() + limit
    seen: list[str] = []
    while time.monotonic() < deadline:
        status, data = api.call("GET", "/v1/peers")
        if status == 200:
            seen = [str(p["node_id"]) for p in data["peers"]]
            if set(wanted) <= set(seen):
                return seen
        time.sleep(0.2)
    raise SystemExit(f"lan_agent: peers {sorted(set(wanted) - set(seen))} not seen in {limit}s")


def follow(api: Api, download_id: str, dest: Path, t0: float, args: argparse.Namespace) -> float:
    """Seconds from ``t0`` until ``dest`` appeared; raises ``TimeoutError`` or ``RuntimeError``
    (the download ended without it)."""
    next_state = next_progress = 0.0
    while (now := time.monotonic()) - t0 < args.timeout:
        if dest.exists():
            return now - t0
        if args.progress and now >= next_progress:
            next_progress = now + PROGRESS_POLL
            _, data = api.call("GET", "/v1/downloads")
            mine = next((d for d in data["downloads"] if d["id"] == download_id), None)
            p = (mine or {}).get("progress") or {}
            emit("progress", now - t0, done=p.get("done", 0), size=p.get("size"))
        if now >= next_state:
            next_state = now + STATE_POLL
            _, status = api.call("GET", "/v1/status")
            if status["downloads"]["active"] == 0 and not dest.exists():
                raise RuntimeError("the download ended without the file")
        time.sleep(FILE_POLL)
    raise TimeoutError


def final_state(api: Api, download_id: str) -> dict[str, Any]:
    """The download once it left starting/running (it does a moment after the rename)."""
    deadline = time.monotonic() + DONE_WAIT
    while True:
        _, data = api.call("GET", f"/v1/downloads/{download_id}")
        if data["state"] not in ("starting", "running") or time.monotonic() > deadline:
            return dict(data)
        time.sleep(0.01)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--api", required=True, help="the node's user API URL")
    p.add_argument("--token-file", type=Path, required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--output", required=True, help="file name in the node's download dir")
    p.add_argument("--download-dir", type=Path, required=True, help="the node's download dir")
    p.add_argument("--sha256", required=True)
    p.add_argument("--helpers", default="", help="comma-separated node ids ('' = alone)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument(
        "--wait-only", action="store_true", help="only wait until the helpers are seen, then exit"
    )
    args = p.parse_args(argv)
    api = Api(args.api, args.token_file.read_text().strip())
    helpers = [h for h in args.helpers.split(",") if h]
    peers = wait_for_peers(api, helpers, PEERS_WAIT)
    emit("ready", 0.0, peers=peers)
    if args.wait_only:
        return 0
    body = {
        "url": args.url,
        "output": args.output,
        "checksums": [f"sha256:{args.sha256}"],
        "helpers": helpers,
    }
    t0 = time.monotonic()
    status, data = api.call("POST", "/v1/downloads", body)
    if status != 201:
        emit("end", time.monotonic() - t0, state="refused", download=data)
        return 1
    download_id = str(data["id"])
    emit("started", time.monotonic() - t0, id=download_id)
    try:
        wall = follow(api, download_id, args.download_dir / args.output, t0, args)
    except (TimeoutError, RuntimeError) as exc:
        wall = time.monotonic() - t0
        final = final_state(api, download_id)
        if final["state"] in ("starting", "running"):
            api.call("DELETE", f"/v1/downloads/{download_id}")
        state = "timeout" if isinstance(exc, TimeoutError) else final["state"]
        emit("end", wall, state=state, download=final)
        return 1
    final = final_state(api, download_id)
    emit("end", wall, state=final["state"], download=final)
    return 0 if final["state"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
