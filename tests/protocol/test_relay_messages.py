"""The relay API's fetch messages: one model, the same JSON as before."""

from __future__ import annotations

import pydantic
import pytest

from swarmget.core.lifecycle import FetchPhase
from swarmget.core.manifest import Manifest
from swarmget.protocol.relay import FetchAnswer, FetchRequest
from swarmget.relay.app import describe
from swarmget.relay.service import FetchReport
from swarmget.relay.store import CacheEntry

SHA = "ab" * 32


def _entry() -> CacheEntry:
    manifest = Manifest(size=10, piece_size=4, sha256=SHA, pieces=("cd" * 32,) * 3)
    return CacheEntry(
        url="u",
        final_url="u",
        etag=None,
        last_modified=None,
        manifest=manifest,
        created=0,
        last_used=0,
    )


def test_a_fetching_answer_lists_only_what_applies() -> None:
    report = FetchReport(
        id="1" * 16, url="https://example.test/f", state=FetchPhase.FETCHING, progress=(3, None)
    )
    sent = describe(report, "http://relay")
    assert sent == {
        "id": "1" * 16,
        "url": "https://example.test/f",
        "state": "fetching",
        "progress": {"done": 3, "size": None},
    }
    assert FetchAnswer.model_validate(sent).as_json() == sent


def test_a_ready_answer_names_the_blob() -> None:
    report = FetchReport(id="1" * 16, url="u", state=FetchPhase.READY, hit=True, entry=_entry())
    sent = describe(report, "http://relay")
    assert sent["blob_url"] == f"http://relay/v1/blobs/{SHA}"
    assert sent["manifest_url"] == f"http://relay/v1/blobs/{SHA}/manifest"
    assert sent["hit"] is True
    assert "error" not in sent
    assert FetchAnswer.model_validate(sent).manifest == _entry().manifest.to_json()


def test_a_failed_answer_carries_the_code() -> None:
    report = FetchReport(
        id="1" * 16, url="u", state=FetchPhase.FAILED, error_code="origin_unusable"
    )
    sent = describe(report, "http://relay")
    assert sent["error"] == {"code": "origin_unusable", "message": ""}


def test_a_fetch_request_is_strict() -> None:
    with pytest.raises(pydantic.ValidationError):
        FetchRequest.model_validate({"url": "u", "more": 1})
    with pytest.raises(pydantic.ValidationError):
        FetchRequest.model_validate({"url": "u" * 8193})
