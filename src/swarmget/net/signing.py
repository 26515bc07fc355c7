"""Signing swarm requests on the client side, without the server framework.

``signed_headers(secret, identity, method, url, body)`` returns the headers to send with
exactly that method, URL and body, signed with the swarm secret and the node's key;
``json_body`` makes the body bytes to sign and send; ``load_secret`` reads the shared
secret. The rules live in ``swarmget.core.auth``; the server's half (the verifying
middleware) is ``swarmget.net.auth``. Kept apart so that a client (``swarmget get``, say)
does not import aiohttp's server."""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Mapping
from typing import Any

from yarl import URL

from swarmget.core.auth import parse_secret, sign
from swarmget.core.errors import InvalidSecret
from swarmget.core.identity import NodeIdentity

__all__ = [
    "NodeIdentity",
    "json_body",
    "load_secret",
    "new_nonce",
    "secret_file_exposure",
    "signed_headers",
]

log = logging.getLogger(__name__)


def secret_file_exposure(st_mode: int) -> str | None:
    """Who else may read or change a secret file of mode ``st_mode`` (in words, naming the
    mode), or None when only its owner (and its group, reading) may. Anyone who reads the
    swarm secret can sign requests as any node of the swarm."""
    mode = stat.S_IMODE(st_mode)
    if mode & 0o004:
        return f"readable by every user (mode {mode:o})"
    if mode & 0o022:
        return f"writable by other users (mode {mode:o})"
    return None


def new_nonce() -> str:
    """A fresh random nonce (144 bits, URL-safe base64)."""
    return secrets.token_urlsafe(18)


def signed_headers(
    secret: bytes,
    identity: NodeIdentity,
    method: str,
    url_or_path: str | URL,
    body: bytes = b"",
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers that sign this request. ``url_or_path`` is the full URL the client will
    request (or its path and query); the signed target is what the server will see,
    ``URL(...).raw_path_qs``, the same form aiohttp's client sends."""
    return sign(
        secret,
        method=method,
        path=URL(url_or_path).raw_path_qs,
        body=body,
        identity=identity,
        now=time.time() if now is None else now,
        nonce=new_nonce() if nonce is None else nonce,
    )


def json_body(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes for a request body (sign exactly these bytes, then send them)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def load_secret(
    path: str | os.PathLike[str] | None = None, *, env_value: str | None = None
) -> bytes:
    """The shared swarm secret from a file (preferred when given) or from the value of an
    environment variable. Surrounding whitespace is ignored. Raises ``InvalidSecret`` with a
    message saying what to fix: none given, unreadable, empty, or shorter than 16 bytes.
    A file other users may read or write is used, with a warning logged naming it and its
    mode (``swarmget doctor`` reports it as a problem)."""
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = f.read(64 * 1024 + 1)
                mode = os.fstat(f.fileno()).st_mode
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise InvalidSecret(f"cannot read the swarm secret file {path}: {reason}") from exc
        if len(raw) > 64 * 1024:
            raise InvalidSecret(f"the swarm secret file {path} is over 64 KiB: wrong file?")
        if (exposure := secret_file_exposure(mode)) is not None:
            log.warning("the swarm secret file %s is %s: chmod 600 it", path, exposure)
        return parse_secret(raw, source=f"file {path}")
    if env_value is not None:
        return parse_secret(env_value.encode(), source="the environment")
    raise InvalidSecret("no swarm secret given: pass a secret file or set the secret variable")
