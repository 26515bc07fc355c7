"""A requester's side of the relay: have it fetch a URL, wait, get the blob and its manifest.

The relay's error answers (``{"error", "code"}``) are read by their code, through
``swarmget.protocol.errors.RELAY_ERRORS``: a refusal is ``RelayRejected`` (or ``InvalidURL``),
the relay busy or unreachable ``RelayUnavailable``; a fetch the relay could not do is
``OriginUnusable`` (``relay_fetch_error``). A code the table does not know is judged by the
status. All are ``DownloadError``s but ``InvalidURL`` (the user's) and a rate limit
(``SourceRateLimited``, with the relay's Retry-After).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp
import pydantic

from swarmget.core.errors import RelayUnavailable, SourceRateLimited, SwarmgetError
from swarmget.core.http import parse_retry_after
from swarmget.core.lifecycle import FetchPhase, parse_phase
from swarmget.core.manifest import Manifest
from swarmget.core.urls import redact_url
from swarmget.net.plain import plain_words
from swarmget.net.signing import NodeIdentity, json_body, signed_headers
from swarmget.protocol.errors import RELAY_ERRORS, error_body, relay_fetch_error
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
            error = answer.error
            code, message = (None, None) if error is None else (error.code, error.message)
            raise relay_fetch_error(code, f"the relay could not fetch {redact_url(url)}: {message}")
        if phase is not FetchPhase.READY:
            raise RelayUnavailable(f"the relay is still fetching {redact_url(url)}; giving up")
        if answer.manifest is None or answer.blob_url is None:
            raise RelayUnavailable("the relay sent a bad manifest: a ready fetch without its blob")
        try:
            manifest = Manifest.from_json(answer.manifest)
        except (KeyError, ValueError) as exc:
            raise RelayUnavailable(f"the relay sent a bad manifest: {exc}") from exc
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
                    raise _refused(resp, text, f"relay {method} {path}")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise RelayUnavailable(
                f"relay {self.relay_url} unreachable: {plain_words(exc)}"
            ) from exc
        try:
            return FetchAnswer.model_validate_json(text)
        except pydantic.ValidationError as exc:
            raise RelayUnavailable("relay answered nonsense") from exc


def _refused(resp: aiohttp.ClientResponse, text: str, what: str) -> SwarmgetError:
    """The exception for the relay's error answer: by its code (``RELAY_ERRORS``)."""
    body = error_body(text)
    code = body.code
    said = (
        f"{resp.status} {code}: {body.message}"
        if code is not None
        else f"{resp.status} {body.message}"
    )
    kind = RELAY_ERRORS.for_code(code, resp.status)
    if issubclass(kind, SourceRateLimited):
        retry = parse_retry_after(resp.headers.get("Retry-After"), time.time())
        return SourceRateLimited(f"{what}: {said}", retry_after=retry)
    return kind(f"{what}: {said}")
