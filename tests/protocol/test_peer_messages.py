"""The peer API's messages: one model, the same JSON as before, strict where it arrives."""

from __future__ import annotations

import json

import pydantic
import pytest

from swarmget.core.http import Validator
from swarmget.core.ranges import ByteRange
from swarmget.net.origin import OriginInfo
from swarmget.net.peer_client import _range_request
from swarmget.protocol.peer import HealthAnswer, RangeRequest, range_header

INFO = OriginInfo(
    url="https://example.test/start",
    final_url="https://example.test/f.bin",
    size=1000,
    validator=Validator(etag='"e"', last_modified=None),
    accepts_ranges=True,
    filename="f.bin",
)


def test_the_requester_sends_the_same_json_as_before() -> None:
    sent = _range_request(INFO, ByteRange(10, 20), "d1", "helper")
    assert sent == {
        "url": "https://example.test/f.bin",
        "start": 10,
        "end": 20,
        "size": 1000,
        "etag": '"e"',
        "last_modified": None,
        "download_id": "d1",
    }
    assert RangeRequest.model_validate_json(json.dumps(sent)).model_dump(mode="json") == sent


@pytest.mark.parametrize(
    "change",
    [{"start": 20}, {"end": 1001}, {"url": "x" * 8193}, {"extra": 1}, {"etag": "e" * 1025}],
)
def test_the_helper_refuses_a_request_out_of_bounds(change: dict[str, object]) -> None:
    sent = {**_range_request(INFO, ByteRange(10, 20), "d1", "helper"), **change}
    with pytest.raises(pydantic.ValidationError):
        RangeRequest.model_validate_json(json.dumps(sent))


def test_the_range_header_names_the_range() -> None:
    assert range_header(10, 20) == "10-20"


def test_a_health_answer_keeps_the_statistics_flat() -> None:
    answer = HealthAnswer(node_id="n1", slots=3, version="1.0", quota_left=None)
    dumped = answer.model_dump(mode="json")
    assert dumped == {"ok": True, "node_id": "n1", "slots": 3, "version": "1.0", "quota_left": None}
    assert HealthAnswer.model_validate_json(json.dumps(dumped)).slots == 3


@pytest.mark.parametrize("slots", ["3", 3.0, True, 0, -1, None])
def test_a_health_answer_needs_a_real_slot_count(slots: object) -> None:
    with pytest.raises(pydantic.ValidationError):
        HealthAnswer.model_validate_json(json.dumps({"ok": True, "node_id": "n", "slots": slots}))
