"""A requester's side of the relay: have it fetch a URL, wait, get the blob and its manifest."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import pydantic

from swarmget.core.errors import DownloadError, OriginUnusable
from swarmget.core.lifecycle import FetchPhase, parse_phase
from swarmget.core.manifest import Manifest
from swarmget.core.urls import redact_url
from swarmget.net.signing import NodeIdentity, json_body, signed_headers
from swarmget.protocol.relay import FETCH_PATH, FETCHES_PATH, FetchAnswer, FetchRequest

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
        answer = await self._call("POST", FETCH_PATH, json_body(FetchRequest(url=url).model_dump()))
        for _ in range(max_polls):
            if parse_phase(answer.state) is not FetchPhase.FETCHING:
                break
            answer = await self._call("GET", f"{FETCHES_PATH}/{answer.id}?wait={WAIT:.0f}", b"")
        phase = parse_phase(answer.state)
        if phase is FetchPhase.FAILED:
            message = answer.error.message if answer.error is not None else None
            shown = redact_url(url)
            raise OriginUnusable(f"the relay could not fetch {shown}: {message}")
        if phase is not FetchPhase.READY:
            raise DownloadError(f"the relay is still fetching {redact_url(url)}; giving up")
        if answer.manifest is None or answer.blob_url is None:
            raise DownloadError("the relay sent a bad manifest: a ready fetch without its blob")
        try:
            manifest = Manifest.from_json(answer.manifest)
        except (KeyError, ValueError) as exc:
            raise DownloadError(f"the relay sent a bad manifest: {exc}") from exc
        return RelayBlob(url=answer.blob_url, manifest=manifest, hit=bool(answer.hit))

    async def _call(self, method: str, path: str, body: bytes) -> FetchAnswer:
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
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise DownloadError(f"relay {self.relay_url} unreachable: {exc}") from exc
        try:
            return FetchAnswer.model_validate_json(text)
        except pydantic.ValidationError as exc:
            raise DownloadError("relay answered nonsense") from exc
