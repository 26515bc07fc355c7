"""Which peers an answer lists: capacity first, then freshness, random among equals (pure)."""

from __future__ import annotations

import random

from swarmget.hub.selection import choose_peers
from swarmget.hub.store import NodeRecord

NOW = 1000.0


def _node(node_id: str, *, slots: int = 3, last_seen: float = NOW, **kw: object) -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        address="10.0.0.1",
        port=7401,
        url="http://10.0.0.1:7401",
        version="1",
        slots=slots,
        group="g",
        last_seen=last_seen,
        **kw,  # type: ignore[arg-type]
    )


def _chosen(nodes: list[NodeRecord], limit: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [r.node_id for r in choose_peers(nodes, limit=limit, now=NOW, fresh=10, rng=rng)]


def test_nodes_that_can_serve_come_first_then_the_fresh_ones() -> None:
    nodes = [
        _node("a-no-slots", slots=0),
        _node("b-quota-used", quota_left=0),
        _node("c-stats-quota-used", stats={"quota_left": 0}),
        _node("d-stale", last_seen=NOW - 11),
        _node("z-good"),
    ]
    assert _chosen(nodes, 2) == ["z-good", "d-stale"]
    assert set(_chosen(nodes, 5)[2:]) == {"a-no-slots", "b-quota-used", "c-stats-quota-used"}


def test_the_answer_is_capped() -> None:
    nodes = [_node(f"n{i:04d}") for i in range(1000)]
    assert len(_chosen(nodes, 64)) == 64


def test_equals_are_listed_in_a_random_order_not_by_id() -> None:
    """Fake nodes with ids sorting first do not take every answer: with 1,000 equal
    nodes, answers drawn with different dice differ, and node ids late in the order get in."""
    nodes = [_node(f"n{i:04d}") for i in range(1000)]
    answers = [_chosen(nodes, 64, seed) for seed in range(5)]
    assert len({tuple(a) for a in answers}) == 5
    assert answers[0] != [f"n{i:04d}" for i in range(64)]
    assert any(name >= "n0500" for name in answers[0])
