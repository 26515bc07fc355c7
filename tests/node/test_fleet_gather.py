"""The fleet view asks its peers in parallel, at most ``max_in_flight`` at once, and answers
in the hub's order whatever order the peers answer in (``node.fleet.gather_summaries``); a
peer's summary (``protocol.peer.NodeSummary``, over the signed ``GET /v1/summary``) gives
its row the origin bytes it saved its group today (#15): a dash from an older node that does
not say, and a malformed figure makes the whole summary refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from swarmget.node.fleet import FleetEntry, fetch_summary, gather_summaries
from swarmget.protocol.peer import MAX_DAY_BYTES, SUMMARY_PATH, NodeSummary
from swarmget.testing.fakes import identity_for
from swarmget.web.fleet_pages import DASH, fleet_row

MiB = 1024 * 1024


async def test_peers_are_asked_in_parallel_within_the_bound() -> None:
    running = 0
    most = 0

    async def fetch(node_id: str, url: str) -> FleetEntry:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01 * (10 - int(node_id)))  # the later ones answer first
        running -= 1
        return FleetEntry(node_id=node_id, url=url, error="unreachable (timed out)")

    peers = [(str(i), f"http://127.0.0.{i + 2}:1") for i in range(10)]
    found = await gather_summaries(fetch, peers, max_in_flight=3)
    assert [e.node_id for e in found] == [str(i) for i in range(10)]
    assert most == 3


# What a node answers for the fleet view, as it goes on the wire; before #15 a node sent no
# ``group_saved_today``.
OLD_SUMMARY: dict[str, Any] = {
    "node_id": "old-node",
    "version": "0.1.0",
    "downloads": {"done": 2},
    "bytes_sent_today": 5 * MiB,
    "slots": 3,
}


class StandIn:
    """A peer of the fleet, as its viewer meets it: it answers the body it is given."""

    url = ""
    body = b""
    session: aiohttp.ClientSession

    async def answer(self, request: web.Request) -> web.Response:
        return web.Response(body=self.body, content_type="application/json")

    async def entry(self, summary: dict[str, Any]) -> FleetEntry:
        """The fleet view's entry for this peer answering ``summary``."""
        self.body = json.dumps(summary).encode()
        viewer = identity_for("fleet-viewer")
        return await fetch_summary(
            self.session, summary["node_id"], self.url, b"k" * 32, viewer, 2.0
        )


@pytest.fixture
async def stand_in_peer() -> AsyncIterator[StandIn]:
    """A peer answering ``GET /v1/summary`` with whatever body the test sets."""
    peer = StandIn()
    app = web.Application()
    app.router.add_get(SUMMARY_PATH, peer.answer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        peer.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as peer.session:
            yield peer
    finally:
        await runner.cleanup()


async def test_a_nodes_saving_for_the_group_today_is_shown_in_its_row(
    stand_in_peer: StandIn,
) -> None:
    entry = await stand_in_peer.entry({**OLD_SUMMARY, "group_saved_today": 3 * MiB + 5})
    assert entry.summary is not None
    assert entry.summary.group_saved_today == 3 * MiB + 5
    assert fleet_row(entry).group_saved_today == "3.0 MiB"


async def test_an_older_nodes_summary_is_shown_with_a_dash(stand_in_peer: StandIn) -> None:
    entry = await stand_in_peer.entry(OLD_SUMMARY)
    assert entry.error is None
    row = fleet_row(entry)
    assert row.reachable
    assert row.sent_today == "5.0 MiB"  # the rest of its row as before
    assert row.group_saved_today == DASH


@pytest.mark.parametrize(
    "bad", [-1, MAX_DAY_BYTES + 1, "1024", 1024.0, True, [1024], {"bytes": 1024}]
)
async def test_a_malformed_saving_is_refused(stand_in_peer: StandIn, bad: object) -> None:
    wire = json.dumps({**OLD_SUMMARY, "group_saved_today": bad})
    with pytest.raises(ValidationError) as refused:
        NodeSummary.model_validate_json(wire)
    errors = refused.value.errors()
    assert {e["loc"][0] for e in errors} == {"group_saved_today"}
    entry = await stand_in_peer.entry({**OLD_SUMMARY, "group_saved_today": bad})
    assert (entry.summary, entry.error) == (None, "answered a malformed summary")
    assert fleet_row(entry).group_saved_today == DASH


def test_the_largest_saving_a_summary_may_carry() -> None:
    wire = json.dumps({**OLD_SUMMARY, "group_saved_today": MAX_DAY_BYTES})
    assert NodeSummary.model_validate_json(wire).group_saved_today == MAX_DAY_BYTES


async def test_a_newer_nodes_summary_with_fields_unknown_here_is_shown(
    stand_in_peer: StandIn,
) -> None:
    """A rolling upgrade: a field a newer node adds is ignored, the row shows the rest."""
    newer = {**OLD_SUMMARY, "group_saved_today": 7, "a_field_of_next_year": {"x": [1, 2]}}
    entry = await stand_in_peer.entry(newer)
    assert entry.error is None
    assert entry.summary is not None
    assert entry.summary.group_saved_today == 7
    assert not hasattr(entry.summary, "a_field_of_next_year")
    assert fleet_row(entry).sent_today == "5.0 MiB"
