"""The hub API's messages and errors: one definition for the hub and its nodes."""

from __future__ import annotations

import json

import pydantic
import pytest

from swarmget.core import errors as e
from swarmget.core.session_auth import EphemeralKey
from swarmget.net.hub_client import PeerInfo, Registered, Registration, _status_error
from swarmget.protocol.errors import HUB_ERRORS, WireError
from swarmget.protocol.hub import PeerEntry, RegisterAnswer, RegisterRequest
from swarmget.testing.fakes import identity_for

NODE = identity_for("node-a").node_id


def test_the_client_and_the_hub_share_the_models() -> None:
    assert PeerInfo is PeerEntry
    assert Registered is RegisterAnswer


def test_a_registration_is_the_json_it_was() -> None:
    sent = Registration(port=7401, version="1.0", slots=3).as_json(NODE)
    assert sent == {
        "node_id": NODE,
        "port": 7401,
        "version": "1.0",
        "slots": 3,
        "group": None,
        "wan_rate": None,
        "quota_left": None,
        "scheme": "http",
    }
    read = RegisterRequest.model_validate_json(json.dumps(sent))
    assert read.model_dump(exclude={"session_key"}) == sent
    assert read.session_key is None  # no session asked: the node key signs everything


def test_a_registration_may_carry_a_session_key() -> None:
    key = EphemeralKey().public_b64
    sent = Registration(port=7401, version="1.0", slots=3).as_json(NODE, key)
    assert RegisterRequest.model_validate_json(json.dumps(sent)).session_key == key
    with pytest.raises(pydantic.ValidationError, match="X25519"):
        RegisterRequest.model_validate_json(json.dumps(sent | {"session_key": "abc"}))


def test_a_peer_entry_lists_reported_stats_only() -> None:
    entry = PeerEntry.model_validate(
        {
            "node_id": NODE,
            "address": "127.0.0.3",
            "port": 7401,
            "url": "http://127.0.0.3:7401",
            "version": "1.0",
            "slots": 2,
            "group": "127.0.0.0/16",
            "stats": {"bytes_served": 5, "unknown": 1},
        }
    )
    listed = entry.as_json()
    assert listed["stats"] == {"bytes_served": 5}
    assert PeerEntry.model_validate(listed) == entry


@pytest.mark.parametrize("row", HUB_ERRORS.rows, ids=lambda row: row.code)
def test_each_hub_error_round_trips(row: WireError) -> None:
    answer = json.dumps({"error": "no", "code": row.code}).encode()
    raised = _status_error(row.status, answer, "POST /v1/x")
    assert type(raised) is row.raised
    assert raised.status == row.status


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (404, None, e.HubRejected),  # a 404 that is not "unknown node": a wrong URL
        (404, "not_found", e.HubRejected),
        (401, "clock_skew", e.HubRejected),
        (429, "replay_cache_full", e.HubUnavailable),
        (500, "http", e.HubUnavailable),
        (502, None, e.HubUnavailable),
        (503, "unknown_node", e.HubUnavailable),  # a known code with another status
    ],
)
def test_an_unlisted_hub_error_is_judged_by_status(
    status: int, code: str | None, expected: type[e.HubError]
) -> None:
    answer = json.dumps({"error": "no", "code": code}).encode() if code else b"<html>"
    assert type(_status_error(status, answer, "GET /v1/peers")) is expected


def test_the_storage_row_answers_storage_errors() -> None:
    assert HUB_ERRORS.for_exception(e.InsufficientStorage("full")) is HUB_ERRORS.default
