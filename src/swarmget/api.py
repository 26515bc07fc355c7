"""The public Python API: ``swarmget.download(url, dest)`` and ``await download_async(...)``.

Both do what ``swarmget get URL -o DEST`` does, through the same service (``run.get``): the
download is handed to a node running in ``state_dir`` (its ``node.json`` is there), joins a
hub's swarm with ``hubs=``, goes through a relay with ``relay_url=``, or else runs alone.
They return the ``DownloadResult`` (path, size, digests, verification) that ``get --json``
prints, and raise what the CLI reports, each error type carrying the CLI's exit status::

    exception (swarmget.X)   exit_code   when
    UsageError               2           a bad URL, checksum, header or option; the
                                         destination exists (force=True replaces it)
    DownloadError            3           the origin is unreachable or refuses, every source
                                         failed (its subclasses below have their own codes)
    OriginChanged            4           the file changed on the server
    ChecksumMismatch         5           the file does not match ``checksum`` (data kept)
    StorageError             6           disk full, over ``max_size``, read-only, permissions

Every one is a ``SwarmgetError`` (``exc.code`` is the ``--json`` error code). Any other
exception is a bug (the CLI's exit 1). An interrupted download (``KeyboardInterrupt``, or
the task cancelled) keeps its partial file, as the CLI's exit 130 does: calling again with
the same arguments resumes it.

``progress`` is called with a ``DownloadProgress`` snapshot (``done`` bytes, ``size``,
``rate``, per-source figures) every quarter second and once when the download ends; if it
raises, the download stops and the exception propagates.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from swarmget.core.errors import (
    ChecksumMismatch,
    DownloadError,
    OriginChanged,
    StorageError,
    SwarmgetError,
    UsageError,
)
from swarmget.engine import DEFAULT_VERIFY_SAMPLE, DownloadProgress, DownloadResult
from swarmget.locations import client_settings, find_config
from swarmget.progress import ProgressCallback
from swarmget.run.get import GetRequest, RouteTaken
from swarmget.run.get import download as run_download

__all__ = [
    "ChecksumMismatch",
    "DownloadError",
    "DownloadProgress",
    "DownloadResult",
    "OriginChanged",
    "ProgressCallback",
    "StorageError",
    "SwarmgetError",
    "UsageError",
    "download",
    "download_async",
]

log = logging.getLogger("swarmget.api")
P = ParamSpec("P")
T = TypeVar("T")

#: The bounds ``swarmget get`` puts on its options (click checks them there).
MAX_CONNECTIONS = 64
MIN_STALL_TIMEOUT = 0.1


async def download_async(
    url: str,
    dest: str | PathLike[str] | None = None,
    *,
    checksum: str | Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
    connections: int = 4,
    force: bool = False,
    restart_if_changed: bool = False,
    progress: ProgressCallback | None = None,
    use_node: bool = True,
    state_dir: str | PathLike[str] | None = None,
    hubs: Sequence[str] = (),
    relay_url: str | None = None,
    secret_file: str | PathLike[str] | None = None,
    source_address: str | None = None,
    verify_sample: float = DEFAULT_VERIFY_SAMPLE,
    stall_timeout: float = 15.0,
    max_size: int | None = None,
    fsync: bool = False,
    on_route: Callable[[RouteTaken], None] | None = None,
) -> DownloadResult:
    """Download ``url`` to ``dest`` (a file or a directory; None: where ``swarmget get``
    without ``-o`` puts it) and verify it; the options are those of ``swarmget get``
    (``checksum="sha256:HEX"``, ``use_node=False`` is ``--no-node``).
    ``on_route(taken)`` is told the way the download went and, for a fallback (the node
    cannot write ``dest`` or does not answer, the hub cannot help), why (default: a fallback
    is a logged warning). The node's state directory, the config's hubs and secret file are
    found as ``swarmget get`` finds them (``swarmget.locations``).

    Raises ``UsageError`` (exit_code 2), ``DownloadError`` (3), ``OriginChanged`` (4),
    ``ChecksumMismatch`` (5) or ``StorageError`` (6), as the CLI exits."""
    config_path, explicit = find_config(None, os.environ)
    settings = client_settings(
        state_dir=Path(state_dir) if state_dir is not None else None,
        env=os.environ,
        config_path=config_path,
        explicit=explicit,
    )
    if secret_file is None and settings.secret_file:
        secret_file = settings.secret_file
    request = GetRequest(
        url=url,
        output=Path(dest) if dest is not None else None,
        connections=_checked_connections(connections),
        checksums=(checksum,) if isinstance(checksum, str) else tuple(checksum),
        headers=_header_lines(headers or {}),
        force=force,
        restart_if_changed=restart_if_changed,
        source_address=source_address,
        fsync=fsync,
        stall_timeout=_checked_range("stall_timeout", stall_timeout, MIN_STALL_TIMEOUT, None),
        hubs=tuple(hubs),
        secret_file=str(secret_file) if secret_file is not None else None,
        no_node=not use_node,
        relay_url=relay_url,
        verify_sample=_checked_range("verify_sample", verify_sample, 0.0, 1.0),
        state_dir=settings.state_dir,
        configured_hubs=settings.hubs,
        max_size=max_size,
    )
    return await run_download(request, display=progress, on_route=on_route or _warn_fallback)


def _blocking(run: Callable[P, Coroutine[Any, Any, T]], *, name: str, doc: str) -> Callable[P, T]:
    """``run`` to its end in a new event loop (``asyncio.run``), with the same parameters
    (one parameter list for both forms of the API: ``inspect.signature`` and type checkers
    see ``run``'s)."""

    @functools.wraps(run)
    def blocking(*args: P.args, **kwargs: P.kwargs) -> T:
        if _loop_running():
            raise RuntimeError(
                f"swarmget.{name}() blocks and cannot run in an event loop's thread: "
                f"await swarmget.{run.__name__}(...) there"
            )
        return asyncio.run(run(*args, **kwargs))

    blocking.__name__ = blocking.__qualname__ = name
    blocking.__doc__ = doc
    return blocking


download = _blocking(
    download_async,
    name="download",
    doc="""``download_async`` run to its end in a new event loop (``asyncio.run``): blocks,
    and raises ``RuntimeError`` in a running loop's thread (await ``download_async`` there).
    Same arguments, result and exceptions.""",
)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _header_lines(headers: Mapping[str, str]) -> tuple[str, ...]:
    """``{"Name": "value"}`` as ``get -H`` takes them (``run.local.parse_headers`` checks
    them: a name with a colon or whitespace, or a newline anywhere, is an ``InvalidHeader``)."""
    lines = []
    for name, value in headers.items():
        if ":" in name or "\n" in value or "\r" in value:
            raise UsageError(f"header must be a name without ':' and a one-line value: {name!r}")
        lines.append(f"{name}: {value}")
    return tuple(lines)


def _checked_connections(connections: int) -> int:
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise UsageError(f"connections must be 1 to {MAX_CONNECTIONS}, not {connections}")
    return connections


def _checked_range(name: str, value: float, low: float, high: float | None) -> float:
    if value < low or (high is not None and value > high):
        bound = f"{low} to {high}" if high is not None else f"at least {low}"
        raise UsageError(f"{name} must be {bound}, not {value}")
    return value


def _warn_fallback(taken: RouteTaken) -> None:
    if taken.fallback:
        log.warning("%s", taken.reason)
