"""The holder side of fetch once per LAN (#15): serving verified ranges of held content.

docs/fetch-once.md §5–§7, §10. Two signed routes on the peer API (``add_holder_routes``):

* ``POST /v1/content-range`` (``ContentRangeRequest``, at most ``MAX_CONTENT_BODY`` bytes):
  the holding is looked up by the key's ``index_name``; the key asked for must be the same
  content (``ContentKey.same_content``) and the range must lie in the ranges this node
  verified. The bytes are read from the node's own file (its path comes from the registry,
  never from the request), opened without following links and only if it is this user's
  regular file (``safe_files``); a finished file must still be the one verified (its
  fingerprint). They stream like ``/v1/range`` (``X-Swarm-Range``, a Content-Length, a
  short body on failure, never a wrong one), in the helper's slots (shared fairly with
  helper streams) and under its ``--rate-limit``, and are counted as LAN bytes
  (``swarmget_lan_served_bytes_total``), **never against ``--daily-quota``**, which is the
  origin data allowance (§7), but against the node's own daily LAN allowance
  (``--lan-daily-quota``, per UTC day like ``--daily-quota``: ``node.quota.DailyQuota``
  on its own file; by default as many bytes as ``--daily-quota``, unlimited without one
  or when given as ``unlimited``): a range is served only when what is left of it covers
  the whole range, else 429 ``lan_quota`` (``LanAllowanceUsedUp``, with Retry-After: the
  next UTC day) and the requester takes those bytes elsewhere.
* ``GET /v1/content/{name}/pieces``: the ``PieceHashes`` the registry was given for the
  content (``HoldingsRegistry.record_pieces``: pieces this node fetched from the origin).

Answers (``protocol.errors.PEER_ERRORS``): 400 ``bad_request``; 401 unsigned (middleware);
409 ``content_not_shareable`` when sharing is disabled (a cache budget of 0: chosen over a
404 so a requester drops this source for the whole download rather than retrying it),
409 ``content_key_mismatch`` (the holding under that name is not the same content, or the
node holds only another version of that URL: another validator, size or digest), 409
``content_not_held`` (no such holding, a range not
verified, the file gone or no longer trustworthy); 429/503 as for helper streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web
from pydantic import ValidationError

from swarmget.core.content import ContentKey
from swarmget.core.errors import (
    ContentError,
    ContentKeyMismatch,
    ContentNotHeld,
    ContentNotShareable,
    LanAllowanceUsedUp,
    UntrustedFile,
)
from swarmget.core.ranges import ByteRange
from swarmget.net.auth import authenticated_node, json_error
from swarmget.node.helper import HELPER
from swarmget.node.helper_service import HelperService, StreamBudget
from swarmget.node.holdings import Holding, HoldingsRegistry, fingerprint_of
from swarmget.node.quota import DailyQuota
from swarmget.node.range_stream import (
    Refusal,
    StreamCut,
    abort,
    range_response,
    refused,
    send_file,
)
from swarmget.protocol.content import (
    CONTENT_PREFIX,
    CONTENT_RANGE_PATH,
    MAX_CONTENT_BODY,
    ContentRangeRequest,
    PieceHashes,
    is_index_name,
)
from swarmget.protocol.errors import PEER_ERRORS
from swarmget.safe_files import open_directory, open_existing_at

__all__ = ["HOLDER", "READ_CHUNK", "HolderService", "HolderStats", "add_holder_routes"]

log = logging.getLogger(__name__)

#: Bytes first sent from the held file; with a rate limit (``--rate-limit``) at least this
#: much per wait of its bucket (``HelperService.paced_step``).
READ_CHUNK = 256 * 1024
#: ... and per ``sendfile`` without a rate limit (the allowance and statistics are counted
#: a chunk at a time; the file is checked unchanged before each).
SENDFILE_CHUNK = 4 * 1024 * 1024


@dataclass
class HolderStats:
    streams_served: int = 0
    lan_bytes_served: int = 0  # swarmget_lan_served_bytes_total
    lan_quota_refused: int = 0  # requests refused: the daily LAN allowance was used up


class HolderService:
    """Looks a request up in the registry and decides whether to serve it."""

    def __init__(self, registry: HoldingsRegistry, *, allowance: DailyQuota | None = None) -> None:
        self.registry = registry
        #: bytes served to LAN peers per UTC day (``--lan-daily-quota``; None: unlimited)
        self.allowance = allowance
        self.stats = HolderStats()

    @contextlib.contextmanager
    def lan_allowance(self, length: int) -> Iterator[list[int]]:
        """Set ``length`` bytes of today's LAN allowance aside for a stream, or raise
        ``LanAllowanceUsedUp``; yields the stream's counter of bytes sent (``[n]``), which
        is what the allowance is charged when the block ends (however it ends)."""
        sent = [0]
        allowance = self.allowance
        if allowance is None:
            yield sent
            return
        if not allowance.try_reserve(length):
            self.stats.lan_quota_refused += 1
            raise LanAllowanceUsedUp(
                "this node's daily LAN allowance is used up", allowance.retry_after()
            )
        try:
            yield sent
        finally:
            allowance.settle(length, sent[0])

    def holding_for(self, key: ContentKey, rng: ByteRange) -> Holding:
        """The holding that may serve ``rng`` of ``key``, or raise the ``ContentError`` to
        answer."""
        if not self.registry.sharing:
            raise ContentNotShareable("this node shares nothing (its cache budget is 0)")
        holding = self.registry.lookup(key.index_name())
        if holding is None and self.registry.holds_other_version(key):
            raise ContentKeyMismatch("this node holds another version of that URL")
        if holding is None:
            raise ContentNotHeld("this node does not hold that content")
        if not holding.key.same_content(key):
            raise ContentKeyMismatch("this node holds other content under that name")
        if not holding.holds(rng):
            raise ContentNotHeld("this node has not verified all of that range")
        return holding

    def pieces_for(self, name: str) -> PieceHashes:
        if not self.registry.sharing:
            raise ContentNotShareable("this node shares nothing (its cache budget is 0)")
        holding = self.registry.lookup(name)
        if holding is None:
            raise ContentNotHeld("this node does not hold that content")
        size = holding.piece_size or max(1, holding.key.size or 1)
        return PieceHashes(piece_size=size, hashes=sorted(holding.piece_hashes.items()))


def open_held(holding: Holding, end: int) -> int:
    """A read-only descriptor of the holding's file, checked (blocking: run in a thread).
    ``ContentNotHeld`` when it is gone, not this user's regular file, shorter than ``end``
    or (a finished file) no longer the one verified."""
    path = holding.path
    try:
        dir_fd = open_directory(path.parent)
    except OSError as exc:
        raise ContentNotHeld("the held file is gone") from exc
    try:
        fd = open_existing_at(dir_fd, path.name, os.O_RDONLY, path)
    except UntrustedFile as exc:
        log.warning("not serving %s: %s", holding.name, exc)
        raise ContentNotHeld("the held file cannot be served") from exc
    except OSError as exc:
        raise ContentNotHeld("the held file cannot be opened") from exc
    finally:
        os.close(dir_fd)
    if fd is None:
        raise ContentNotHeld("the held file is gone")
    try:
        check_unchanged(holding, fd, end)
    except ContentNotHeld:
        os.close(fd)
        raise
    return fd


def check_unchanged(holding: Holding, fd: int, end: int) -> None:
    """``ContentNotHeld`` when the open file ``fd`` is shorter than ``end`` or (a finished
    file) no longer the one verified (its fingerprint: device, inode, size, mtime)."""
    st = os.fstat(fd)
    changed = holding.fingerprint is not None and fingerprint_of(st) != holding.fingerprint
    if changed or st.st_size < end:
        log.warning("not serving %s: %s changed since it was verified", holding.name, holding.path)
        raise ContentNotHeld("the held file changed since it was verified")


HOLDER: web.AppKey[HolderService] = web.AppKey("holder", HolderService)


async def _parse(request: web.Request) -> tuple[ContentRangeRequest, ContentKey]:
    """The request and its key (a weak ETag, say, makes no key: 400)."""
    raw = await request.read()
    if len(raw) > MAX_CONTENT_BODY:
        raise Refusal("bad_request", "content range request too large")
    try:
        req = ContentRangeRequest.model_validate_json(raw)
    except ValidationError as exc:
        message = f"bad content range request: {exc.errors()[0]['msg']}"
        raise Refusal("bad_request", message) from exc
    try:
        return req, req.key.key()
    except ValueError as exc:
        raise Refusal("bad_request", f"bad content key: {exc}") from exc


def _content_error(exc: ContentError) -> web.Response:
    row = PEER_ERRORS.for_exception(exc)
    headers = {}
    if isinstance(exc, LanAllowanceUsedUp) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(exc.retry_after)))
    return json_error(row.status, str(exc), row.code, headers=headers)


async def handle_content_range(request: web.Request) -> web.StreamResponse:
    holder, service = request.app[HOLDER], request.app[HELPER]
    requester = authenticated_node(request)
    try:
        req, key = await _parse(request)
        rng = ByteRange(req.start, req.end)
        holding = holder.holding_for(key, rng)
        with holder.lan_allowance(rng.length) as sent:
            with service.slot(requester, rng.length, origin=False) as budget:  # no quota
                with holder.registry.pinned(holding.name):
                    fd = await asyncio.to_thread(open_held, holding, rng.end)
                    try:
                        return await _stream(request, holder, service, (holding, fd), rng, budget)
                    finally:
                        sent[0] = budget.used  # what the LAN allowance is charged
                        os.close(fd)
    except Refusal as exc:
        service.stats.refuse(exc.code)
        return refused(exc)
    except ContentError as exc:
        service.stats.refuse(PEER_ERRORS.for_exception(exc).code)
        return _content_error(exc)


async def _stream(
    request: web.Request,
    holder: HolderService,
    service: HelperService,
    held: tuple[Holding, int],
    rng: ByteRange,
    budget: StreamBudget,
) -> web.StreamResponse:
    """Stream ``rng`` of the open file (``held``: its holding and descriptor) with the
    kernel's sendfile, a chunk at a time (``_step``), each under the rate limit and with
    the file checked unchanged before it (``check_unchanged``); what went out is counted on
    ``budget`` (``HelperService.progress``)."""
    holding, fd = held
    resp = range_response(rng)
    await resp.prepare(request)
    # capped, the first bytes are not held back for a larger burst
    step = READ_CHUNK if service.limits.rate_limit is not None else SENDFILE_CHUNK
    offset = rng.start
    try:
        with io.FileIO(fd, "rb", closefd=False) as file:  # fd stays open: the caller's
            while offset < rng.end:
                want = min(step, rng.end - offset)
                step = _step(service)
                await service.throttle(want)
                check_unchanged(holding, fd, rng.end)
                _read_ahead(fd, offset + want, min(step, rng.end - offset - want))
                # counted as handed to the kernel (as a write's bytes were): the requester
                # may have them all before this coroutine runs again
                service.progress(budget, want)
                holder.stats.lan_bytes_served += want
                stall = service.limits.write_stall_timeout
                await send_file(file, offset, want, stall, request.transport)
                offset += want
        await resp.write_eof()
    except (OSError, StreamCut, ContentNotHeld) as exc:  # mid-body: a short body
        log.warning("content stream %s to %s cut: %s", rng, authenticated_node(request), exc)
        abort(request)
        return resp
    holder.stats.streams_served += 1
    return resp


def _step(service: HelperService) -> int:
    """Bytes per sendfile: ``SENDFILE_CHUNK``, or with a rate limit a paced step."""
    if service.limits.rate_limit is None:
        return SENDFILE_CHUNK
    return service.paced_step(READ_CHUNK)


def _read_ahead(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to read the next chunk into its cache meanwhile: sendfile reads the
    file on the event loop's thread, which should find it there."""
    if length > 0 and hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)


async def handle_pieces(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not is_index_name(name):
        return json_error(400, "not a content index name", "bad_request")
    try:
        answer = request.app[HOLDER].pieces_for(name)
    except ContentError as exc:
        return _content_error(exc)
    return web.json_response(answer.model_dump(mode="json"))


def add_holder_routes(app: web.Application, holder: HolderService) -> None:
    """Serve ``holder``'s content on the peer API ``app`` (signed by its middleware; its
    ``client_max_size`` is ``MAX_CONTENT_BODY``)."""
    app[HOLDER] = holder
    app.router.add_post(CONTENT_RANGE_PATH, handle_content_range)
    app.router.add_get(CONTENT_PREFIX + "/{name}/pieces", handle_pieces)
