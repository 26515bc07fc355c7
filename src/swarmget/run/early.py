"""``swarmget get URL -o FILE`` handed to the node before the command's imports (issue #14).

The command's own start costs ~0.1 s before its download reaches the node: click, asyncio
and the engine's types are imported, the options parsed, the route chosen. For the plain
case this module sends the download first, with the standard library and a few small
modules only (``run.node_files``, ``run.node_http``'s blocking request, the protocol's
request body): the node starts fetching while the rest of the command is imported.

It is a guess that the full command checks, never a second source of truth: ``start``
handles only ``get URL`` with ``-o/--output FILE``, ``--checksum SPEC`` (repeated, as
click takes it), ``--force``, ``--state-dir DIR``, ``--json`` and ``-q/-s/--quiet/--silent``,
another option with a value at most once (anything else: None, and the
command goes its usual way), and remembers the request body it sent. The command then
works out its own request as always (``run.get``'s node route) and *adopts* the node's
download only when that body is the same, for the same state directory
(``EarlyStart.adopt``); otherwise the early download is cancelled (and waited for) before
the command sends its own. One the command never adopted, because it failed, took another
route or was interrupted, is cancelled when the program ends (``EarlyStart.drop``). A
Ctrl-C while the command is being imported is held until the command can say what it did
(``hold_interrupts``): the download is then cancelled and the command exits 130, as for a
Ctrl-C a moment later.
Nothing here raises: any surprise (no node, an untrusted directory, a refusal, a timeout)
is None, and the command then meets it itself and says what it is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

TYPE_CHECKING = False  # (typing is ~4 ms of a plain `get`'s start: issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["EarlyStart", "parse_plain_get", "start"]

#: Seconds each step of the early request may take (connect, send, the node's answer).
EARLY_TIMEOUT = 2.0

_FLAGS = {"--json": "json", "-q": "quiet", "-s": "quiet", "--quiet": "quiet"}
_FLAGS |= {"--silent": "quiet", "--force": "force"}
_VALUES = {"-o": "output", "--output": "output", "--state-dir": "state_dir"}


@dataclass(frozen=True)
class PlainGet:
    """The options of a plain ``get`` (see the module docstring)."""

    url: str
    output: str | None = None
    state_dir: str | None = None
    force: bool = False
    checksums: tuple[str, ...] = ()  # as given (``core.digests.parse_checksum_spec``'s)


def parse_plain_get(argv: Sequence[str]) -> PlainGet | None:
    """``argv`` (the program's arguments) as a plain ``get``, or None when it is anything
    else: another command, a global option, an option outside the few above, one given
    twice, a second argument, ``--``, ``-o -`` or ``-o DIR/``."""
    if not argv or argv[0] != "get":
        return None
    seen: dict[str, str | bool] = {}
    checksums: list[str] = []
    url: str | None = None
    rest = list(argv[1:])
    while rest:
        token = rest.pop(0)
        if token == "--checksum":  # (multiple=True: every one counts, in order)
            if not rest or rest[0].startswith("-"):
                return None
            checksums.append(rest.pop(0))
        elif token in _FLAGS:  # (a flag given twice is the flag, as for click)
            name: str = _FLAGS[token]
            seen[name] = True
        elif token in _VALUES:
            name = _VALUES[token]
            if name in seen or not rest or rest[0].startswith("-"):
                return None
            seen[name] = rest.pop(0)
        elif token.startswith("-") or url is not None:
            return None
        else:
            url = token
    output = seen.get("output")
    state_dir = seen.get("state_dir")
    if url is None or output == "" or state_dir == "":
        return None
    assert output is None or isinstance(output, str)
    assert state_dir is None or isinstance(state_dir, str)
    if output is not None and output.endswith(os.sep):
        return None  # a directory, made when missing: the command's business
    force = seen.get("force") is True
    return PlainGet(url, output, state_dir, force, tuple(checksums))


@dataclass
class EarlyStart:
    """A download this process handed to the node before the command ran."""

    state_dir: Path
    download_id: str
    body: dict[str, Any]
    token: str
    accepted_at: float  # time.monotonic() when the node answered
    adopted: bool = False
    dropped: bool = field(default=False)
    #: a Ctrl-C came while it was held (``hold_interrupts``): the command raises it as soon
    #: as it can tell what it left behind
    interrupted: bool = False

    def hold_interrupts(self) -> None:
        """Hold Ctrl-C until the command is ready for it (``release_interrupts``): during
        its imports and parsing a ``KeyboardInterrupt`` would end the program with the
        node's download neither followed nor cancelled, nor a word about it."""
        import signal

        def held(_signum: int, _frame: object) -> None:
            self.interrupted = True

        signal.signal(signal.SIGINT, held)

    def release_interrupts(self) -> None:
        """Ctrl-C raises ``KeyboardInterrupt`` again, and at once if one was held."""
        import signal

        signal.signal(signal.SIGINT, signal.default_int_handler)
        if self.interrupted:
            raise KeyboardInterrupt

    def adopt(self, state_dir: Path, body: dict[str, Any]) -> bool:
        """The command's own request for the node in ``state_dir``: True (and the download
        is the command's from now on) when it is the one sent early."""
        if self.dropped or self.adopted:
            return self.adopted
        self.adopted = state_dir == self.state_dir and body == self.body
        return self.adopted

    def take_back(self) -> bool:
        """The command withdraws it itself (on its own loop, ``run.remote.withdraw``):
        True unless it was adopted or dropped already; ``drop`` does nothing after it."""
        if self.adopted or self.dropped:
            return False
        self.dropped = True
        return True

    def drop(self) -> None:
        """Cancel the early download unless it was adopted (once; errors ignored: a node
        that does not answer has no download to cancel either)."""
        if self.adopted or self.dropped:
            return
        self.dropped = True
        target = f"/v1/downloads/{quote(self.download_id, safe='')}"
        try:
            _call(self.state_dir, self.token, "DELETE", target, None)
        except Exception:  # (nothing to tell: the command says what went wrong, if anything)
            pass


def start(argv: Sequence[str], env: dict[str, str] | None = None) -> EarlyStart | None:
    """Hand a plain ``get`` (``argv``: the program's arguments) to the node of its state
    directory, as the command would; None when it is not plain, no node runs there, or
    anything at all goes otherwise."""
    plain = parse_plain_get(argv)
    if plain is None:
        return None
    try:
        return _start(plain, os.environ if env is None else env)
    except Exception:  # (the command meets it again and says what it is)
        return None


def _start(plain: PlainGet, env: Any) -> EarlyStart | None:
    from swarmget.core.urls import validate_url
    from swarmget.core.verification import DEFAULT_VERIFY_SAMPLE
    from swarmget.locations import client_settings, find_config
    from swarmget.protocol.user_create import DOWNLOADS_PATH, create_body
    from swarmget.run.node_files import find_local_node, relative_output

    config, explicit = find_config(None, env)
    given = None if plain.state_dir is None else Path(plain.state_dir)
    settings = client_settings(state_dir=given, env=env, config_path=config, explicit=explicit)
    node = find_local_node(settings.state_dir)
    if node is None:
        return None
    body = create_body(
        url=validate_url(plain.url),
        output=relative_output(node, None if plain.output is None else Path(plain.output)),
        checksums=_checksums(plain.checksums),
        force=plain.force,
        restart_if_changed=False,
        verify_sample=DEFAULT_VERIFY_SAMPLE,
        max_size=None,
    )
    if body is None:
        return None
    status, answer = _call(settings.state_dir, node.token, "POST", DOWNLOADS_PATH, body)
    download_id = answer.get("id") if isinstance(answer, dict) else None
    if status != 201 or not isinstance(download_id, str):
        return None
    return EarlyStart(settings.state_dir, download_id, body, node.token, time.monotonic())


def _checksums(given: tuple[str, ...]) -> list[str]:
    if not given:
        return []
    from swarmget.core.digests import parse_checksum_spec  # (~4 ms: only when given)

    return [str(parse_checksum_spec(c)) for c in given]


def _call(state_dir: Path, token: str, method: str, target: str, body: Any) -> tuple[int, Any]:
    """One request to the node's user API, through a descriptor of the checked directory
    (as ``run.remote.open_local_node`` reaches it)."""
    from swarmget.node.statefiles import API_SOCKET
    from swarmget.run.node_files import check_trust
    from swarmget.run.node_http import request_json_blocking

    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        check_trust(fd, state_dir)
        headers = {"Authorization": f"Bearer {token}"}
        return request_json_blocking(
            f"/proc/self/fd/{fd}/{API_SOCKET}",
            method,
            target,
            body,
            headers,
            timeout=EARLY_TIMEOUT,
        )
    finally:
        os.close(fd)
