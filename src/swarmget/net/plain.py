"""A library's failure in plain words, for messages people read.

aiohttp's exceptions print as ``ClientConnectorError(ConnectionKey(host=..., ...))`` (their
``repr``) or ``Cannot connect to host h:p ssl:default [Connect call failed ('h', p)]``;
neither belongs in a status line, a log line or the portal. ``plain_words(exc)`` says what
happened ("cannot connect to 127.0.0.9:7000: connection refused"); callers put it into the
error-tree exception they raise (``raise HubUnavailable(...) from exc``), which keeps the
original for debugging.
"""

from __future__ import annotations

import os

import aiohttp

__all__ = ["plain_words"]


def plain_words(exc: BaseException) -> str:
    """What ``exc`` (an aiohttp or OS error, or a timeout) means, without class names."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {_where(exc.host, exc.port)}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"answered HTTP {exc.status}" + (f" {exc.message}" if exc.message else "")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"not a usable URL: {exc.url}"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError):
        return _os_reason(exc)
    text = str(exc)
    return text if text else "connection failed"


def _where(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if exc.errno:
        return os.strerror(exc.errno).lower()
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.errno:  # (aiohttp's name lookup failures)
        return os.strerror(cause.errno).lower()
    return exc.strerror or str(exc) or "connection failed"
