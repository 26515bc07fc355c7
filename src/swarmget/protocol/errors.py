"""The error codes that cross the wire, in one table both sides import.

Every swarmget API answers an error with ``{"error": MESSAGE, "code": CODE}`` and an HTTP
status. The message is for people; decisions are made on the code (and, for a code this
table does not know, on the status), never on the message's text.

One table per API: ``PEER_ERRORS`` (a helper answering a requester), ``HUB_ERRORS`` (the
hub answering a node), ``RELAY_ERRORS`` (the relay answering a requester or a blob reader)
and ``USER_ERRORS`` (a node's user API answering the CLI).

``EXCEPTIONS`` maps every ``code`` of the error tree (``swarmget.core.errors``) to its class:
an API that reports a download's error by its tree code (the user API) is read back into the
same exception. ``ErrorTable`` is one API's list of ``WireError`` rows: the server picks the
row for the exception it caught (``for_exception``: the first row whose ``answers`` class
matches), the client picks the row for the code it read (``for_code``) and raises that row's
``raised`` class. A row's ``raised`` is what the *client* makes of it, which is not always
what the server caught: a helper whose origin changed is, to the requester, a broken source.

    server: exception --for_exception--> (status, code) --wire--> for_code --> raised: client

A code the client does not know (a newer peer, a proxy in the way) falls back on the status
(``fallback``), so an unknown code is never an error of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from swarmget.core import errors as e

__all__ = [
    "EXCEPTIONS",
    "HUB_ERRORS",
    "PEER_ERRORS",
    "RELAY_ERRORS",
    "USER_ERRORS",
    "ErrorTable",
    "ErrorBody",
    "WireError",
    "error_body",
    "exception_for_code",
    "relay_fetch_error",
]


def _tree(root: type[e.SwarmgetError]) -> Iterator[type[e.SwarmgetError]]:
    yield root
    for sub in root.__subclasses__():
        yield from _tree(sub)


def _codes() -> dict[str, type[e.SwarmgetError]]:
    table: dict[str, type[e.SwarmgetError]] = {}
    for kind in _tree(e.SwarmgetError):
        if kind.__module__ == e.__name__:  # the tree itself, not a subclass made elsewhere
            table.setdefault(kind.code, kind)
    return table


#: Every code of the error tree and the exception that carries it.
EXCEPTIONS: dict[str, type[e.SwarmgetError]] = _codes()


def exception_for_code(code: object, message: str) -> e.SwarmgetError:
    """The error-tree exception whose ``code`` this is; an unknown code (or none) is a
    ``DownloadError``: something went wrong that we cannot name."""
    kind = EXCEPTIONS.get(code, e.DownloadError) if isinstance(code, str) else e.DownloadError
    return kind(message)


#: Characters of an error answer's message (or of a foreign answer's text) kept at most.
MAX_ERROR_MESSAGE = 300


@dataclass(frozen=True)
class ErrorBody:
    """What an error answer said: its ``code`` (None when it is not one of ours) and a
    message for people, at most ``MAX_ERROR_MESSAGE`` characters."""

    code: str | None
    message: str


def error_body(raw: bytes | str | None, *, otherwise: str | None = None) -> ErrorBody:
    """Read an error answer ``{"error": MESSAGE, "code": CODE}``, tolerating anything else:
    a foreign answer (a proxy's page, a truncated or oversized body: ``raw`` None) has no
    code, and its message is ``otherwise`` (e.g. the HTTP reason) or the start of its text.
    Pure: the caller reads the body, bounded."""
    data: object = None
    if raw is not None:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = None
    if isinstance(data, dict):
        code = data.get("code")
        message = str(data.get("error", ""))[:MAX_ERROR_MESSAGE]
        return ErrorBody(code if isinstance(code, str) else None, message)
    if otherwise is not None or raw is None:
        return ErrorBody(None, (otherwise or "")[:MAX_ERROR_MESSAGE])
    text = raw if isinstance(raw, str) else raw[: MAX_ERROR_MESSAGE * 4].decode(errors="replace")
    return ErrorBody(None, text[:MAX_ERROR_MESSAGE])


@dataclass(frozen=True, kw_only=True)
class WireError:
    """One error an API answers with: its code, its status, the exception the server
    answers it for (None: refused before any work, by the server's own rules) and the
    exception the client raises when it reads it."""

    code: str
    status: int
    raised: type[e.SwarmgetError]
    answers: type[e.SwarmgetError] | None = None


class ErrorTable:
    """One API's error rows, looked up from either side."""

    def __init__(
        self,
        rows: Sequence[WireError],
        *,
        default: WireError,
        fallback: Callable[[int], type[e.SwarmgetError]],
    ) -> None:
        self.rows = (*rows, default)
        self.default = default
        self._fallback = fallback
        self._by_code = {row.code: row for row in self.rows}
        if len(self._by_code) != len(self.rows):
            raise ValueError("an error code is listed twice")

    def for_exception(self, exc: BaseException) -> WireError:
        """Server side: the row for what went wrong (``default`` when no row names it)."""
        for row in self.rows:
            if row.answers is not None and isinstance(exc, row.answers):
                return row
        return self.default

    def row(self, code: str) -> WireError:
        """The row of a code the server itself answers with (KeyError: not in the table)."""
        return self._by_code[code]

    def for_code(self, code: object, status: int) -> type[e.SwarmgetError]:
        """Client side: the exception to raise for an answer's code and status. A code this
        table does not know, or one that came with another status, is judged by status."""
        row = self._by_code.get(code) if isinstance(code, str) else None
        if row is not None and row.status == status:
            return row.raised
        return self._fallback(status)


# --- the peer API (a helper answering a requester) ---------------------------------------------


def _peer_fallback(status: int) -> type[e.SwarmgetError]:
    if status in (429, 503):
        return e.SourceRateLimited
    if status == 504:
        return e.SourceRetryable
    return e.SourceBroken


_BROKEN, _LIMITED = e.SourceBroken, e.SourceRateLimited

#: What a helper answers ``POST /v1/range`` with, and what the requester makes of it: over a
#: limit or busy → rate limited (try this helper later), the origin unreachable → retryable,
#: anything that says the helper cannot or will not do the job → broken. Rows are in the order
#: the helper matches its exception against them (the most specific class first).
PEER_ERRORS = ErrorTable(
    [
        WireError(code="bad_request", status=400, raised=_BROKEN, answers=e.InvalidURL),
        WireError(
            code=e.ForbiddenTarget.code, status=403, raised=_BROKEN, answers=e.ForbiddenTarget
        ),
        WireError(code="origin_changed", status=409, raised=_BROKEN, answers=e.OriginChanged),
        WireError(
            code="origin_busy", status=503, raised=e.SourceRateLimited, answers=e.SourceRateLimited
        ),
        WireError(code="ranges_ignored", status=502, raised=_BROKEN, answers=e.RangesIgnored),
        WireError(code="origin_broken", status=502, raised=_BROKEN, answers=e.SourceBroken),
        WireError(code="origin_unusable", status=502, raised=_BROKEN, answers=e.OriginUnusable),
        # fetch once per LAN (#15): a holder asked for a content range it cannot serve
        WireError(
            code=e.ContentNotHeld.code,
            status=409,
            raised=e.ContentNotHeld,
            answers=e.ContentNotHeld,
        ),
        WireError(
            code=e.ContentKeyMismatch.code,
            status=409,
            raised=e.ContentKeyMismatch,
            answers=e.ContentKeyMismatch,
        ),
        WireError(
            code=e.ContentNotShareable.code,
            status=409,
            raised=e.ContentNotShareable,
            answers=e.ContentNotShareable,
        ),
        # the holder's daily LAN allowance is used up: this holder is done for today, the
        # requester takes those bytes elsewhere (not rate limited: not worth waiting for)
        WireError(
            code=e.LanAllowanceUsedUp.code,
            status=429,
            raised=e.LanAllowanceUsedUp,
            answers=e.LanAllowanceUsedUp,
        ),
        WireError(code="busy", status=429, raised=_LIMITED),
        WireError(code="quota", status=429, raised=_LIMITED),
        WireError(code="draining", status=503, raised=_LIMITED),
        WireError(code="helping_paused", status=503, raised=_LIMITED),  # its owner paused it
    ],
    default=WireError(code="origin_unreachable", status=504, raised=e.SourceRetryable),
    fallback=_peer_fallback,
)


# --- the hub API (the hub answering a node) -----------------------------------------------------


def _hub_fallback(status: int) -> type[e.SwarmgetError]:
    return e.HubUnavailable if status >= 500 or status == 429 else e.HubRejected


#: What the hub answers a node with: a node it does not know → register again; the hub
#: busy, full or failing → back off and retry; a refusal of what we sent → fix the
#: configuration. Statuses and codes the hub answers that are not listed here (auth's 401s,
#: aiohttp's own errors as ``http``) are judged by status, the same way.
HUB_ERRORS = ErrorTable(
    [
        WireError(code="unknown_node", status=404, raised=e.UnknownNode),
        WireError(code="not_a_content_member", status=404, raised=e.NotAContentMember),
        WireError(code="too_many_nodes", status=429, raised=e.HubUnavailable),
        #: fetch once (#15): the content index is full for this node or this content
        WireError(code="content_limit", status=429, raised=e.HubUnavailable),
        #: the hub is strained (``swarmget.hub.admission``): come back after Retry-After
        WireError(code="overloaded", status=503, raised=e.HubUnavailable),
        WireError(code="bad_request", status=400, raised=e.HubRejected),
        WireError(code="bad_address", status=400, raised=e.HubRejected),
        WireError(code="forbidden", status=403, raised=e.HubRejected),
        WireError(code="group_not_allowed", status=403, raised=e.HubRejected),
        WireError(code="too_large", status=413, raised=e.HubRejected),
    ],
    default=WireError(code="storage", status=503, raised=e.HubUnavailable, answers=e.StorageError),
    fallback=_hub_fallback,
)


# --- the relay API (the relay answering a requester, or anyone reading a blob) ----------------


def _relay_fallback(status: int) -> type[e.SwarmgetError]:
    return e.RelayUnavailable if status >= 500 or status == 429 else e.RelayRejected


_REJECTED, _UNAVAILABLE = e.RelayRejected, e.RelayUnavailable

#: What the relay answers a requester with (``swarmget.relay.app``; the 401s, 413 and the
#: 429 of the replay cache come from the signature middleware, ``swarmget.net.auth``), and
#: what ``swarmget.net.relay_client`` makes of it: a request the relay refuses → rejected (fix
#: the configuration); the relay busy, or a fetch it no longer knows → unavailable (ask again
#: later). ``busy`` and ``overloaded`` answer blob reads (by client address, in total): to a
#: reader that is the source rate limiting it, with Retry-After. A fetch the relay could not
#: do is not an error of the API: it answers the fetch, failed (``relay_fetch_error``).
RELAY_ERRORS = ErrorTable(
    [
        WireError(code=e.InvalidURL.code, status=400, raised=e.InvalidURL, answers=e.InvalidURL),
        WireError(code="not_found", status=404, raised=_UNAVAILABLE),
        WireError(code=e.AuthError.code, status=401, raised=_REJECTED),
        WireError(code=e.BadIdentity.code, status=401, raised=_REJECTED),
        WireError(code=e.ClockSkew.code, status=401, raised=_REJECTED),
        WireError(code=e.ReplayedRequest.code, status=401, raised=_REJECTED),
        WireError(code=e.ReplayCacheFull.code, status=429, raised=_UNAVAILABLE),
        WireError(code="too_large", status=413, raised=_REJECTED),
        WireError(code="busy", status=429, raised=e.SourceRateLimited),
        WireError(code="overloaded", status=503, raised=e.SourceRateLimited),
    ],
    default=WireError(code="bad_request", status=400, raised=_REJECTED),
    fallback=_relay_fallback,
)


def relay_fetch_error(code: object, message: str) -> e.DownloadError:
    """The exception for a fetch the relay answers as failed, with the error-tree ``code`` of
    what went wrong there: to the requester, the origin cannot be used through the relay
    (``OriginUnusable``, or the subclass the code names, e.g. ``ForbiddenTarget``)."""
    kind = EXCEPTIONS.get(code) if isinstance(code, str) else None
    if kind is not None and issubclass(kind, e.OriginUnusable):
        return kind(message)
    return e.OriginUnusable(message)


# --- the user API (a node answering its own user: the CLI) ---------------------------------------


def _user_fallback(status: int) -> type[e.SwarmgetError]:
    return e.DownloadError if status >= 500 else e.UsageError


def _by_depth(root: type[e.SwarmgetError]) -> list[type[e.SwarmgetError]]:
    """``root`` and the tree's classes under it, the most specific first."""
    kinds = [kind for kind in _tree(root) if kind.__module__ == e.__name__]
    return sorted(kinds, key=lambda kind: -len(kind.__mro__))


#: What a node's user API answers, and what the CLI makes of it: a request it refuses is a
#: usage error — the one its code names when the refusal is the user's (a bad URL, checksum
#: or destination: answered with that error's own code), else ``UsageError``; the hub behind
#: ``GET /v1/peers`` failing is the ``HubError`` it was. A download that *failed* is not an
#: error of the API: its JSON carries the error-tree code (``exception_for_code``).
USER_ERRORS = ErrorTable(
    [
        WireError(code="bad_request", status=400, raised=e.UsageError),
        WireError(code=e.AuthError.code, status=401, raised=e.UsageError),  # token wrong
        WireError(code="forbidden", status=403, raised=e.UsageError),  # not the node's user
        WireError(code="not_found", status=404, raised=e.UsageError),
        WireError(code=e.WrongState.code, status=409, raised=e.WrongState, answers=e.WrongState),
        *(
            WireError(code=kind.code, status=503, raised=kind, answers=kind)
            for kind in _by_depth(e.HubError)
        ),
        *(
            WireError(code=kind.code, status=400, raised=kind, answers=kind)
            for kind in _by_depth(e.UsageError)
            if kind not in (e.UsageError, e.WrongState)
        ),
    ],
    default=WireError(
        code=e.UsageError.code, status=400, raised=e.UsageError, answers=e.UsageError
    ),
    fallback=_user_fallback,
)
