"""A node's side of the hub's content index (fetch once per LAN, #15).

``ContentHubClient`` speaks ``swarmget.hub.content_routes`` through any ``HubApi`` (a
``HubClient`` or a ``HubPool``, ``swarmget.net.hub_client``; only a registered node may
join, so a requester-only client gets ``UnknownNode``):
the same signed requests, answer-size limit and error translation as every other hub
call. A content is named by its ``index_name`` (never
its URL). Every call raises, from the one error tree (``swarmget.core.errors``):

* ``NotAContentMember`` (news, leave, report): the hub does not know us as a member of that
  content (it restarted, or our membership expired): ``join`` again with what we have
  and the grants we still work on (``JoinContent.have`` / ``granted``);
* ``UnknownNode``: we are not registered (any more): the membership loop registers again;
* ``HubUnavailable``: unreachable, timed out, 5xx, 429 (``content_limit``: the index is
  full for this node or this content; ``overloaded``), or an answer that is not a valid
  ``ContentGroup`` *for this content* (another name or size, a member listed twice, or
  ourselves): go on without the hub's help for a while;
* ``HubRejected``: the hub refused what we sent (400, 403 ``forbidden``: we were dropped
  from the content after reports; 401 bad signature; 404 from a hub without these routes).

``ValueError`` for a ``name`` that is not an index name (our own bug). Through a
``HubPool``, a call fails over to the next hub like ``peers`` does; the hubs' content
indexes are each in their own memory, so the next call there raises
``NotAContentMember`` and the member joins again, there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import pydantic

from swarmget.core.errors import HubUnavailable
from swarmget.net.hub_client import parse_answer
from swarmget.protocol.content import (
    ContentGroup,
    ContentLeave,
    ContentNews,
    ContentReport,
    JoinContent,
    content_path,
)

__all__ = ["ContentHubClient", "SignedHub"]

_GROUP = pydantic.TypeAdapter(ContentGroup)


class SignedHub(Protocol):
    """What the content client needs of a hub client: signed calls (``HubClient.call``)."""

    @property
    def hub_url(self) -> str: ...

    @property
    def node_id(self) -> str: ...

    async def call(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None
    ) -> bytes: ...


class ContentHubClient:
    """The content routes of the hub, as ``hub``'s node (see the module doc)."""

    def __init__(self, hub: SignedHub) -> None:
        self._hub = hub

    async def join(self, name: str, body: JoinContent) -> ContentGroup:
        """Join (or join again) content ``name``: the other members with what they have,
        and our first grant when we fetch, may fetch and hold no unfinished grant."""
        answer = await self._hub.call("POST", content_path(name, "join"), _json(body))
        return self._group(name, body.size, answer)

    async def news(self, name: str, body: ContentNews, *, size: int) -> ContentGroup:
        """What we verified since the last news, and whether we want a grant (``claim``)
        or have nothing left for our origin link (``idle``: the group endgame). ``size``:
        the content's, to check the answer against."""
        answer = await self._hub.call("POST", content_path(name, "news"), _json(body))
        return self._group(name, size, answer)

    async def leave(self, name: str, *, keep_as_holder: bool = False) -> None:
        """We are done with ``name`` (``keep_as_holder``: stay listed as a holder of what we
        have; our grants go back to the pool either way)."""
        body = ContentLeave(keep_as_holder=keep_as_holder)
        await self._hub.call("POST", content_path(name, "leave"), _json(body))

    async def report(self, name: str, body: ContentReport, *, size: int) -> ContentGroup:
        """Member ``body.node_id`` served bytes that failed ``body.verification``; the hub
        drops a member reported by two others. The answer is the group as it is now."""
        answer = await self._hub.call("POST", content_path(name, "report"), _json(body))
        return self._group(name, size, answer)

    def _group(self, name: str, size: int, answer: bytes) -> ContentGroup:
        group = parse_answer(_GROUP, answer)
        where = f"hub {self._hub.hub_url}: the answer about content {name[:12]}"
        if group.name != name or group.size != size:
            raise HubUnavailable(f"{where} is about another content")
        ids = [m.node_id for m in group.members]
        if len(set(ids)) != len(ids) or self._hub.node_id in ids:
            raise HubUnavailable(f"{where} lists a member twice, or us")
        return group


def _json(body: pydantic.BaseModel) -> dict[str, Any]:
    return body.model_dump(mode="json")
