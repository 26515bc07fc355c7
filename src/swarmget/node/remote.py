"""Driving a running node daemon from the CLI, through its local user API.

A node writes ``node.json`` (its API URL and download directory) into its state directory
while it runs; its bearer token is in ``api-token`` there. ``swarmget get`` uses the node
when both are present and the API answers, so that the download runs with the node's swarm
and shows up in its portal; the CLI only follows the progress.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmget.core.errors import DownloadError, SwarmgetError, UsageError
from swarmget.core.ranges import ByteRange
from swarmget.core.scheduler import SourceInfo, SourceState
from swarmget.core.verification import VerificationReport
from swarmget.node.engine import DownloadProgress, DownloadResult, Stage

if TYPE_CHECKING:
    import aiohttp

POLL = 0.25


@dataclass(frozen=True)
class LocalNode:
    api_url: str
    token: str
    download_dir: Path


def find_local_node(state_dir: Path) -> LocalNode | None:
    """The node whose state directory is ``state_dir``, if one says it runs (not checked)."""
    try:
        info = json.loads((state_dir / "node.json").read_text())
        token = (state_dir / "api-token").read_text().strip()
        return LocalNode(str(info["api_url"]), token, Path(info["download_dir"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def relative_output(node: LocalNode, output: Path | None) -> str | None:
    """``output`` as the node's API wants it (relative to its download directory); raises
    ``UsageError`` when it lies outside (the node only writes into its directory)."""
    if output is None:
        return None
    resolved = output.resolve()
    base = node.download_dir.resolve()
    if not resolved.is_relative_to(base) or resolved == base:
        raise UsageError(f"the node saves into {base}; {output} is outside it")
    return str(resolved.relative_to(base))


class NodeSession:
    """Calls to one node's user API."""

    def __init__(self, session: aiohttp.ClientSession, node: LocalNode) -> None:
        self._session = session
        self._node = node
        self._headers = {"Authorization": f"Bearer {node.token}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        try:
            async with self._session.request(
                method, self._node.api_url + path, json=body, headers=self._headers
            ) as resp:
                return resp.status, await resp.json(content_type=None)
        except (_client_error(), OSError, ValueError) as exc:
            raise DownloadError(f"the local node stopped answering: {exc}") from exc

    async def alive(self) -> bool:
        try:
            async with asyncio.timeout(2.0):
                status, _ = await self.call("GET", "/v1/status")
        except (SwarmgetError, TimeoutError):
            return False
        return status == 200

    async def start(self, body: dict[str, Any]) -> str:
        status, data = await self.call("POST", "/v1/downloads", body)
        if status != 201:
            raise UsageError(f"the node refused the download: {data.get('error', data)}")
        return str(data["id"])

    async def follow(self, download_id: str, on_progress: Any) -> dict[str, Any]:
        """Poll until the download ends; ``on_progress(DownloadProgress)`` on every poll."""
        while True:
            _, data = await self.call("GET", f"/v1/downloads/{download_id}")
            if data.get("progress"):
                on_progress(progress_from_json(data["url"], data["progress"]))
            if data["state"] not in ("starting", "running"):
                return dict(data)
            await asyncio.sleep(POLL)


def result_from_json(data: dict[str, Any]) -> DownloadResult:
    """The ``DownloadResult`` of a finished download as the node's API describes it."""
    r = data["result"]
    progress = progress_from_json(data["url"], data["progress"])
    return DownloadResult(
        path=Path(r["path"]),
        size=r["size"],
        elapsed=r["elapsed"],
        mode=r["mode"],
        resumed_bytes=r["resumed_bytes"],
        fetched_bytes=r["fetched_bytes"],
        digests=dict(r["digests"]),
        verified=tuple(r["verified"]),
        sources=progress.sources,
        last_byte_to_done=r["last_byte_to_done"],
        verification=(  # an older node's result has none: it never sampled
            VerificationReport.from_json(r["verification"])
            if "verification" in r
            else VerificationReport()
        ),
    )


def error_from_json(error: dict[str, Any]) -> SwarmgetError:
    """The error-tree exception whose ``code`` the API reported (the message kept)."""
    pending: list[type[SwarmgetError]] = [SwarmgetError]
    while pending:
        kind = pending.pop()
        if kind.code == error.get("code"):
            return kind(str(error.get("message", "")))
        pending.extend(kind.__subclasses__())
    return DownloadError(str(error.get("message", error)))


def progress_from_json(url: str, p: dict[str, Any]) -> DownloadProgress:
    return DownloadProgress(
        stage=Stage(p["stage"]),
        url=url,
        dest=Path(p["dest"]) if p.get("dest") else None,
        size=p.get("size"),
        done=p["done"],
        rate=p["rate"],
        elapsed=p["elapsed"],
        mode=p["mode"],
        resumed_bytes=p["resumed_bytes"],
        sources=tuple(_source(s) for s in p["sources"]),
    )


def _source(s: dict[str, Any]) -> SourceInfo:
    return SourceInfo(
        source_id=s["id"],
        state=SourceState(s["state"]),
        slots=s["slots"],
        active_leases=s["active"],
        received=s["received"],
        claimed=s["claimed"],
        rate=s["rate"],
        failures=s["failures"],
        segments=tuple(ByteRange(a, b) for a, b in s["segments"]),
        ban_reason=s["ban_reason"],
    )


def _client_error() -> type[Exception]:
    import aiohttp  # imported by whoever made the session: only a lookup here

    return aiohttp.ClientError
