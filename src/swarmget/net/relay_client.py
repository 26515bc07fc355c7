"""A requester's side of the relay: have it fetch a URL, wait, get the blob and its manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from swarmget.core.errors import DownloadError, OriginUnusable
from swarmget.core.lifecycle import FetchPhase, parse_phase
from swarmget.core.manifest import Manifest
from swarmget.core.urls import redact_url
from swarmget.net.signing import NodeIdentity, json_body, signed_headers

WAIT = 25.0


@dataclass(frozen=True)
class RelayBlob:
    url: str  # where the bytes are (Range, ETag = the sha256)
    manifest: Manifest
    hit: bool


class RelayClient:
    def __init__(
        self, session: aiohttp.ClientSession, relay_url: str, secret: bytes, identity: NodeIdentity
    ) -> None:
        self._session = session
        self.relay_url = relay_url.rstrip("/")
        self._secret = secret
        self._identity = identity

    async def fetch(self, url: str, *, max_polls: int = 1000) -> RelayBlob:
        """Ask the relay for ``url`` and wait until it has it (it fetches at most once)."""
        data = await self._call("POST", "/v1/fetch", json_body({"url": url}))
        for _ in range(max_polls):
            if parse_phase(data.get("state")) is not FetchPhase.FETCHING:
                break
            data = await self._call("GET", f"/v1/fetches/{data['id']}?wait={WAIT:.0f}", b"")
        phase = parse_phase(data.get("state"))
        if phase is FetchPhase.FAILED:
            error = data.get("error") or {}
            shown = redact_url(url)
            raise OriginUnusable(f"the relay could not fetch {shown}: {error.get('message')}")
        if phase is not FetchPhase.READY:
            raise DownloadError(f"the relay is still fetching {redact_url(url)}; giving up")
        try:
            manifest = Manifest.from_json(data["manifest"])
        except (KeyError, ValueError) as exc:
            raise DownloadError(f"the relay sent a bad manifest: {exc}") from exc
        return RelayBlob(url=str(data["blob_url"]), manifest=manifest, hit=bool(data["hit"]))

    async def _call(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        url = self.relay_url + path
        headers = signed_headers(self._secret, self._identity, method, url, body)
        headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=WAIT + 15)
        try:
            async with self._session.request(
                method, url, data=body or None, headers=headers, timeout=timeout
            ) as resp:
                text = await resp.text()
                if resp.status not in (200, 202):
                    raise DownloadError(f"relay {method} {path}: {resp.status} {text[:300]}")
                data = json.loads(text)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise DownloadError(f"relay {self.relay_url} unreachable: {exc}") from exc
        if not isinstance(data, dict):
            raise DownloadError("relay answered nonsense")
        return data
