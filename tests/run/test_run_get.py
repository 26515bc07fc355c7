"""``swarmget.run.get``: the route of a download decided from facts, and the request checked."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from swarmget.core.errors import InvalidHeader, InvalidURL, UsageError
from swarmget.node.statefiles import NODE_FILE
from swarmget.run.get import GetRequest, Route, RouteFacts, choose_route, facts_of, prepare

URL = "http://127.0.0.1:9/f.bin"


def facts(
    *, hubs: bool = False, relay: bool = False, no_node: bool = False, node_file: bool = False
) -> RouteFacts:
    return RouteFacts(hubs=hubs, relay=relay, no_node=no_node, node_file=node_file)


@pytest.mark.parametrize(
    ("given", "route"),
    [
        (facts(), Route.ALONE),
        (facts(node_file=True), Route.NODE),
        (facts(node_file=True, no_node=True), Route.ALONE),
        (facts(node_file=True, relay=True), Route.RELAY),  # the node has its own relay setting
        (facts(relay=True), Route.RELAY),
        (facts(hubs=True), Route.SWARM),
        (facts(hubs=True, node_file=True), Route.SWARM),  # a swarm of our own comes first
        (facts(hubs=True, relay=True), Route.SWARM),  # (the in-process node uses the relay)
    ],
)
def test_the_route_for_the_facts(given: RouteFacts, route: Route) -> None:
    assert choose_route(given) is route


def test_every_combination_has_one_route_and_hubs_win() -> None:
    for hubs, relay, no_node, node_file in itertools.product((False, True), repeat=4):
        route = choose_route(facts(hubs=hubs, relay=relay, no_node=no_node, node_file=node_file))
        assert (route is Route.SWARM) == hubs
        assert route is not Route.NODE or (node_file and not no_node and not relay)


def test_the_node_file_is_a_fact_only_when_it_matters(tmp_path: Path) -> None:
    (tmp_path / NODE_FILE).write_text("{}")
    asked = GetRequest(url=URL, state_dir=tmp_path)
    assert facts_of(prepare(asked)).node_file
    assert choose_route(facts_of(prepare(asked))) is Route.NODE
    for other in (
        GetRequest(url=URL, state_dir=tmp_path, no_node=True),
        GetRequest(url=URL, state_dir=tmp_path, relay_url="http://127.0.0.1:7410"),
        GetRequest(url=URL, state_dir=tmp_path, hubs=("http://127.0.0.1:7400",)),
    ):
        assert not facts_of(prepare(other)).node_file
    assert not facts_of(prepare(GetRequest(url=URL, state_dir=tmp_path / "none"))).node_file


def test_a_dangling_node_file_link_still_says_a_node_may_run(tmp_path: Path) -> None:
    """``run.remote`` decides whether to trust it; here only its presence counts."""
    (tmp_path / NODE_FILE).symlink_to(tmp_path / "gone")
    assert facts_of(prepare(GetRequest(url=URL, state_dir=tmp_path))).node_file


def test_prepare_builds_the_spec_the_options_and_the_hubs() -> None:
    prepared = prepare(
        GetRequest(
            url=URL,
            connections=7,
            headers=("X-A: 1",),
            hubs=("http://127.0.0.1:7400/, http://127.0.0.1:7401", "http://127.0.0.1:7400"),
            stall_timeout=3.0,
            max_size=10,
        )
    )
    assert prepared.spec.url == URL
    assert prepared.spec.scheduler.stall_timeout == 3.0
    assert prepared.spec.max_size == 10
    assert prepared.options.connections == 7
    assert dict(prepared.options.headers) == {"X-A": "1"}
    assert prepared.hub_urls == ("http://127.0.0.1:7400", "http://127.0.0.1:7401")


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (GetRequest(url="ftp://127.0.0.1/f"), InvalidURL),
        (GetRequest(url=URL, headers=("no colon",)), InvalidHeader),
        (GetRequest(url=URL, hubs=("file:///etc",)), InvalidURL),
        (GetRequest(url=URL, checksums=("md5:zz",)), UsageError),
    ],
)
def test_a_bad_request_is_a_usage_error(request_: GetRequest, error: type[Exception]) -> None:
    with pytest.raises(error):
        prepare(request_)
    assert issubclass(error, UsageError)


def test_the_configured_hubs_come_after_a_node_and_the_relay() -> None:
    """Issue #16: ``get`` honours ``[node] hub`` when no node runs (not with --no-node)."""
    configured = RouteFacts(
        hubs=False, relay=False, no_node=False, node_file=False, configured_hubs=True
    )
    assert choose_route(configured) is Route.SWARM
    with_node = RouteFacts(
        hubs=False, relay=False, no_node=False, node_file=True, configured_hubs=True
    )
    assert choose_route(with_node) is Route.NODE
    told_not = RouteFacts(
        hubs=False, relay=False, no_node=True, node_file=True, configured_hubs=True
    )
    assert choose_route(told_not) is Route.ALONE
    relay = RouteFacts(hubs=False, relay=True, no_node=False, node_file=False, configured_hubs=True)
    assert choose_route(relay) is Route.RELAY
