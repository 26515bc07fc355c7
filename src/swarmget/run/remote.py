"""Driving a running node daemon from the CLI, through its local user API.

A running node keeps, in its state directory (0700): ``node.json`` (that it runs, and its
download directory), ``api-token`` (a bearer token made anew at every start, 0600) and
``api.sock``, the Unix socket its user API listens on. The CLI talks to the node **only on
that socket**, never at the TCP address ``node.json`` names: a node that crashed leaves its
``node.json`` behind, and any local user may bind the port it records, but nobody except the
directory's owner can put a socket into a 0700 directory. So before the token is sent,
``open_local_node`` checks that the directory, the token file and the socket all belong to
one user and that nobody else may write into the directory (``UntrustedStateDir``
otherwise). ``swarmget get`` uses the node when it answers there, so that the download
runs with the node's swarm and shows up in its portal; the CLI only follows the progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from swarmget.core.errors import NodeLost, SwarmgetError, UsageError
from swarmget.core.lifecycle import still_going
from swarmget.engine import DownloadSpec
from swarmget.node.statefiles import API_SOCKET
from swarmget.protocol.user_create import DOWNLOADS_PATH, create_body
from swarmget.run.node_files import LocalNode, check_trust, find_local_node
from swarmget.run.node_files import relative_output as relative_output  # (for run.get)
from swarmget.run.node_http import request_json

if TYPE_CHECKING:
    from swarmget.engine import DownloadResult
    from swarmget.node.hub_report import HubReport

POLL = 0.25


@contextlib.asynccontextmanager
async def open_local_node(state_dir: Path) -> AsyncIterator[NodeSession | None]:
    """A ``NodeSession`` on the Unix socket of the node running in ``state_dir``; None
    when no node says it runs there. Raises ``UntrustedStateDir`` (see the module
    docstring). The socket is reached through a descriptor of the checked directory."""
    node = find_local_node(state_dir)
    if node is None:
        yield None
        return
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        check_trust(fd, state_dir)  # the very directory the connections go through
        yield NodeSession(f"/proc/self/fd/{fd}/{API_SOCKET}", node)
    finally:
        os.close(fd)


class NodeSession:
    """Calls to one node's user API on its Unix socket (``socket_path``: as
    ``open_local_node`` reaches it, through a descriptor of the checked directory), each
    its own connection (``run.node_http``: no aiohttp to import)."""

    def __init__(self, socket_path: str, node: LocalNode) -> None:
        self._socket_path = socket_path
        self._node = node
        self._headers = {"Authorization": f"Bearer {node.token}"}

    @property
    def node(self) -> LocalNode:
        return self._node

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The node's answer; ``NodeLost`` when it is not running, the connection to it is
        lost before its whole answer (killed mid-download), or the answer is not JSON. Said
        in plain words: never the framing library's or the socket's own text."""
        where = self._node.state_dir
        try:
            return await request_json(self._socket_path, method, path, body, self._headers)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NodeLost(
                f"the node in {where} is not running (nothing listens on its socket)"
            ) from exc
        except (asyncio.IncompleteReadError, OSError) as exc:
            raise NodeLost(
                f"the connection to the node in {where} was lost (the node stopped or was "
                "killed); run the command again once it runs, or with --no-node"
            ) from exc
        except ValueError as exc:  # (not HTTP as read here, not JSON, or over MAX_ANSWER)
            raise malformed(self._node) from exc

    async def cancel(self, download_id: str) -> bool:
        """Cancel the node's download (its partial file kept); False when the node did not
        say it did (gone, or not answering within 5 s)."""
        try:
            async with asyncio.timeout(5.0):
                status, _ = await self.call(
                    "DELETE", f"{DOWNLOADS_PATH}/{quote(download_id, safe='')}"
                )
        except (SwarmgetError, TimeoutError):
            return False
        return status == 200

    async def alive(self) -> bool:
        try:
            async with asyncio.timeout(2.0):
                status, _ = await self.call("GET", "/v1/status")
        except (SwarmgetError, TimeoutError):
            return False
        return status == 200

    async def start(self, request: CreateRequest) -> Started:
        """The node's download for ``request``: started now, or (``joined``) the one it
        already ran for this very request into that output."""
        status, data = await self.call("POST", DOWNLOADS_PATH, request.as_json())
        if status not in (200, 201):
            raise _refused(status, data)
        download_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(download_id, str):
            raise malformed(self._node)
        return Started(download_id, joined=status == 200 and data.get("joined") is True)

    async def follow(self, download_id: str, on_progress: Any) -> dict[str, Any]:
        """Until the download ends; ``on_progress(DownloadProgress)`` at least every
        ``POLL`` seconds. Each call is held by the node until the download ended or ``POLL``
        passed (``?wait=``), so its end is known at once, not at the next poll."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            # no events: the node renders far less, four times a second
            path = f"/v1/downloads/{download_id}?wait={POLL}&events=0"
            _, data = await self.call("GET", path)
            if not isinstance(data, dict) or not isinstance(data.get("state"), str):
                raise malformed(self._node)
            if data.get("progress"):
                from swarmget.node.download_json import progress_from_json

                try:
                    progress = progress_from_json(data["url"], data["progress"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise malformed(self._node) from exc
                on_progress(progress)
            if not still_going(data):
                return dict(data)
            # a node that does not hold the call (an older one) is not asked in a tight loop
            await asyncio.sleep(max(0.0, asked + POLL - loop.time()))


@dataclass(frozen=True)
class Started:
    """The node's answer to a new download: its id; ``joined`` when the node already ran
    that very download (resumed when it restarted, or asked by another command) and this
    command follows it rather than starting it."""

    download_id: str
    joined: bool = False


def hub_from_json(data: Mapping[str, Any]) -> HubReport | None:
    """``node.download_json.hub_from_json``, imported when a download's answer is read (the
    answer's readers cost the command ~9 ms of imports: after its download started)."""
    from swarmget.node.download_json import hub_from_json as read

    return read(data)


def result_from_json(data: Mapping[str, Any]) -> DownloadResult:
    """``node.download_json.result_from_json``, imported when first needed (see above)."""
    from swarmget.node.download_json import result_from_json as read

    return read(data)


async def withdraw(api: NodeSession, download_id: str, limit: float = 5.0) -> None:
    """Take back a download sent in the command's stead (``run.early``) that is not the one
    the command wants: cancel it and wait (at most ``limit`` seconds) until it has ended,
    so that its output and part file are free again; one that had already finished is
    removed, its file with it. Quiet when the node does not answer."""
    await api.cancel(download_id)
    with contextlib.suppress(SwarmgetError, TimeoutError):
        async with asyncio.timeout(limit):
            ended = await api.follow(download_id, lambda _progress: None)
            if ended.get("state") == "done":
                target = f"{DOWNLOADS_PATH}/{quote(download_id, safe='')}/remove"
                await api.call("POST", target, {"delete_file": True})


def malformed(node: LocalNode) -> NodeLost:
    """The node answered with something that is not its API's JSON."""
    return NodeLost(f"the node in {node.state_dir} sent a malformed answer (not its API's JSON)")


def error_from_json(error: dict[str, Any]) -> SwarmgetError:
    """The error-tree exception whose ``code`` the API reported (the message kept)."""
    from swarmget.protocol.errors import exception_for_code

    return exception_for_code(error.get("code"), str(error.get("message", error)))


@dataclass(frozen=True)
class CreateRequest:
    """The body of ``POST /v1/downloads``, as ``protocol.user.CreateDownload`` validates it
    (built without pydantic when every field is within its bounds: see
    ``protocol.user_create``)."""

    body: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return dict(self.body)


def create_request(spec: DownloadSpec, output: str | None) -> CreateRequest:
    """The user API's request for ``spec`` (``output``: relative to the node's download
    directory). One the node would refuse (over the protocol's bounds) is a ``UsageError``
    here, as the node's refusal would be."""
    fields: dict[str, Any] = {
        "url": spec.url,
        "output": output,
        "checksums": [str(d) for d in spec.checksums],
        "force": spec.force,
        "restart_if_changed": spec.restart_if_changed,
        "verify_sample": spec.verify_sample,
        "max_size": spec.max_size,
    }
    body = create_body(**fields)
    if body is not None:
        return CreateRequest(body)
    import pydantic  # (only for a request outside the bounds, or of another type)

    from swarmget.protocol.user import CreateDownload

    try:
        return CreateRequest(CreateDownload(**fields).as_json())
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"the node would refuse the download: {field}: {first['msg']}") from exc


def _refused(status: int, data: Any) -> SwarmgetError:
    """The node refused to start a download: the exception its code names in
    ``USER_ERRORS`` (``invalid_url``, ``invalid_checksum`` ...; else judged by status, a
    refusal being a ``UsageError``)."""
    return error_answer(status, data, "the node refused the download")


def error_answer(status: int, data: Any, what: str) -> SwarmgetError:
    """A user-API answer other than success, as the exception its code names in
    ``USER_ERRORS`` (judged by ``status`` when it names none); ``what`` starts the message."""
    error = data if isinstance(data, dict) else {}
    said = error.get("error")
    if not isinstance(said, str) or not said:  # never a Python repr of what came back
        said = data if isinstance(data, str) and data else "no explanation given"
    message = f"{what}: {said}"
    from swarmget.protocol.errors import USER_ERRORS

    return USER_ERRORS.for_code(error.get("code"), status)(message)
