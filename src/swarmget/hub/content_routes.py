"""The hub's content index over HTTP (fetch once per LAN, #15; ``docs/fetch-once.md`` §3-4).

::

    POST /v1/content/{name}/join    JoinContent  → ContentGroup
    POST /v1/content/{name}/news    ContentNews  → ContentGroup
    POST /v1/content/{name}/leave   ContentLeave → {"ok": true}
    POST /v1/content/{name}/report  ContentReport → ContentGroup

``name`` is a content's ``index_name`` (64 lowercase hex; 400 ``bad_request`` otherwise):
the hub never sees a URL of content. Every route is signed like the other node-to-hub
routes (the hub app's auth middleware: 401 unsigned), by a node registered and live (404
``unknown_node`` otherwise: register again); members are of the asker's own group, with
the peer URL of their registration. Bodies are at most ``MAX_CONTENT_BODY`` bytes (413
``too_large``) and validated strictly (400 ``bad_request`` naming the field). News, leave
and report from a node that is not a member get 404 ``not_a_content_member`` (join
again); the index's bounds answer 429 ``content_limit``; a member dropped after reports
may not join again (403 ``forbidden``). The state itself is ``hub.content_index``.

``expire`` (run by the hub's sweep, every ``SWEEP_EVERY`` TTL) ends the memberships of
nodes no longer live in their group, and of fetching members silent for a TTL;
``forget_node`` those of a node that left the hub.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from swarmget.hub.admission import Admission
from swarmget.hub.content_index import ContentIndex, ContentRefusal
from swarmget.hub.edge import parse_body
from swarmget.hub.metrics import HubMetrics
from swarmget.hub.store import NodeRecord, RegistryStore
from swarmget.net.auth import authenticated_node
from swarmget.protocol.content import (
    CONTENT_PREFIX,
    MAX_CONTENT_BODY,
    ContentGroup,
    ContentLeave,
    ContentNews,
    ContentReport,
    JoinContent,
    is_index_name,
)

__all__ = ["ContentRoutes"]

log = logging.getLogger(__name__)


class ContentRoutes:
    """The content routes of one hub app, over one ``ContentIndex``."""

    def __init__(
        self,
        *,
        store: RegistryStore,
        clock: Callable[[], float],
        admission: Admission,
        metrics: HubMetrics,
        index: ContentIndex | None = None,
    ) -> None:
        self.index = index or ContentIndex()
        self._store = store
        self._clock = clock
        self._admission = admission
        self._metrics = metrics

    def add_to(self, app: web.Application) -> None:
        for action, handler in (
            ("join", self.join),
            ("news", self.news),
            ("leave", self.leave),
            ("report", self.report),
        ):
            app.router.add_post(f"{CONTENT_PREFIX}/{{name}}/{action}", handler)

    # --- handlers ------------------------------------------------------------------------------

    async def join(self, request: web.Request) -> web.Response:
        name, me, now = await self._asker(request)
        body = await parse_body(request, JoinContent, MAX_CONTENT_BODY)
        group = self.index.join(me.group, name, me.node_id, me.url, body, now=now)
        return self._answer(group)

    async def news(self, request: web.Request) -> web.Response:
        name, me, now = await self._asker(request)
        body = await parse_body(request, ContentNews, MAX_CONTENT_BODY)
        group = self.index.news(me.group, name, me.node_id, me.url, body, now=now)
        return self._answer(group)

    async def leave(self, request: web.Request) -> web.Response:
        name, me, _ = await self._asker(request)
        body = await parse_body(request, ContentLeave, MAX_CONTENT_BODY)
        self.index.leave(me.group, name, me.node_id, keep_as_holder=body.keep_as_holder)
        self._count()
        return web.json_response({"ok": True})

    async def report(self, request: web.Request) -> web.Response:
        name, me, now = await self._asker(request)
        body = await parse_body(request, ContentReport, MAX_CONTENT_BODY)
        group = self.index.report(me.group, name, me.node_id, body, now=now)
        log.info(
            "content %s: %s reported %s (%s)",
            name[:12],
            me.node_id,
            body.node_id,
            body.verification.value,
        )
        return self._answer(group)

    # --- upkeep --------------------------------------------------------------------------------

    async def expire(self, now: float) -> int:
        """End the memberships of nodes no longer live, and of silent fetching members (see
        the module doc); returns how many ended."""
        ttl = self._admission.live_ttl
        ended = 0
        for group in sorted(self.index.groups()):
            live = [r.node_id for r in await self._store.live_in_group(group, now, ttl)]
            ended += self.index.expire(group, live, now=now, silent_after=ttl)
        if ended:
            log.info("content index: %d membership(s) expired", ended)
        self._count()
        return ended

    def forget_node(self, node_id: str) -> None:
        """The node left the hub: it leaves every content."""
        self.index.forget_node(node_id)
        self._count()

    # --- inside --------------------------------------------------------------------------------

    async def _asker(self, request: web.Request) -> tuple[str, NodeRecord, float]:
        """The content's name, the asker's live registration and the time, or a refusal."""
        name = request.match_info["name"]
        if not is_index_name(name):
            raise ContentRefusal("bad_request", "name: not a content index name (64 hex)")
        node_id = authenticated_node(request)
        now = self._clock()
        me = await self._store.live_node(node_id, now, self._admission.live_ttl)
        if me is None:
            raise ContentRefusal("unknown_node", f"node {node_id} is not registered (any more)")
        return name, me, now

    def _answer(self, group: ContentGroup) -> web.Response:
        self._count()
        return web.json_response(group.model_dump(mode="json"))

    def _count(self) -> None:
        self._metrics.contents = self.index.count()
        self._metrics.content_claims = self.index.grants_given
        self._metrics.content_reports = self.index.reports
