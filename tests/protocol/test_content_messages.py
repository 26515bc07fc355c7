"""The fetch-once messages (#15) are strict: bounded, sorted, inside the content."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from swarmget.core.content import ContentKey
from swarmget.core.ranges import ByteRange, RangeSet
from swarmget.protocol.content import (
    MAX_RANGES,
    ContentGroup,
    ContentKeyModel,
    ContentNews,
    ContentRangeRequest,
    ContentReport,
    JoinContent,
    PieceHashes,
    content_path,
    ranges_of,
    wire_ranges,
)

NAME = "ab" * 32


def test_join_accepts_sorted_runs_inside_the_size() -> None:
    join = JoinContent.model_validate({"size": 100, "have": [[0, 10], [20, 30]]})
    assert ranges_of(join.have).total() == 20


@pytest.mark.parametrize(
    "have",
    [
        [[10, 5]],  # backwards
        [[0, 10], [5, 20]],  # overlapping
        [[20, 30], [0, 10]],  # unsorted
        [[0, 101]],  # beyond the size
        [[0, 0]],  # empty run
        [["0", "10"]],  # strings are not counts
        [[-1, 10]],
        [[True, 10]],
    ],
)
def test_join_refuses_bad_runs(have: list[list[object]]) -> None:
    with pytest.raises(ValidationError):
        JoinContent.model_validate({"size": 100, "have": have})


def test_unknown_fields_and_too_many_runs_are_refused() -> None:
    with pytest.raises(ValidationError):
        JoinContent.model_validate({"size": 100, "url": "http://x/"})
    runs = [[2 * i, 2 * i + 1] for i in range(MAX_RANGES + 1)]
    with pytest.raises(ValidationError):
        ContentNews.model_validate({"have": runs})
    ContentNews.model_validate({"have": runs[:MAX_RANGES]})


def test_group_checks_name_members_and_grant() -> None:
    member = {"node_id": "n1", "url": "http://127.0.0.2:1/", "have": [[0, 50]]}
    ok = ContentGroup.model_validate({"name": NAME, "size": 50, "members": [member]})
    assert ok.grant is None
    with pytest.raises(ValidationError):
        ContentGroup.model_validate({"name": "x" * 64, "size": 50})
    with pytest.raises(ValidationError):  # a member's run beyond the size
        ContentGroup.model_validate({"name": NAME, "size": 40, "members": [member]})
    with pytest.raises(ValidationError):
        ContentGroup.model_validate({"name": NAME, "size": 40, "grant": [30, 41]})
    with pytest.raises(ValidationError):
        ContentGroup.model_validate(
            {"name": NAME, "size": 50, "members": [member | {"node_id": "bad id"}]}
        )


def test_range_request_must_lie_inside_the_key() -> None:
    key = {"url": "http://example.com/f", "size": 10, "etag": '"e"'}
    assert ContentRangeRequest.model_validate({"key": key, "start": 0, "end": 10}).end == 10
    with pytest.raises(ValidationError):
        ContentRangeRequest.model_validate({"key": key, "start": 0, "end": 11})
    with pytest.raises(ValidationError):
        ContentRangeRequest.model_validate({"key": key | {"sha256": "XYZ"}, "start": 0, "end": 1})


def test_key_model_round_trips_a_core_key() -> None:
    key = ContentKey.from_probe(final_url="HTTP://Example.COM:80/a?b", size=7, etag='"v1"')
    assert ContentKeyModel.of(key).key() == key
    with pytest.raises(ValueError, match="size"):
        ContentKeyModel.of(ContentKey(url="http://x/", size=None))


def test_report_and_pieces_and_paths() -> None:
    with pytest.raises(ValidationError):
        ContentReport.model_validate(
            {"node_id": "n", "start": 5, "end": 5, "verification": "sampled"}
        )
    with pytest.raises(ValidationError):
        PieceHashes.model_validate({"piece_size": 4, "hashes": [[1, "a" * 64], [0, "b" * 64]]})
    assert content_path(NAME, "join") == f"/v1/content/{NAME}/join"
    with pytest.raises(ValueError, match="index name"):
        content_path("../etc", "join")


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 1000)), max_size=40))
def test_wire_ranges_round_trip(pairs: list[tuple[int, int]]) -> None:
    ranges = RangeSet(ByteRange(s, s + n) for s, n in pairs)
    runs = wire_ranges(ranges)
    assert ranges_of(JoinContent(size=2 * 10**6, have=runs).have) == ranges
