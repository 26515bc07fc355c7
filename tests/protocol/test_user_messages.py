"""The user API's messages: one CreateDownload for the CLI, the portal and the API."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from swarmget.core import errors as e
from swarmget.core.digests import parse_checksum_spec
from swarmget.engine import DownloadSpec
from swarmget.protocol.user import CreateDownload
from swarmget.run.remote import _refused, create_request, error_from_json

SHA = "sha256:" + "ab" * 32


def _spec(**changes: object) -> DownloadSpec:
    fields: dict[str, object] = {
        "url": "https://example.test/f.bin",
        "output": Path("/x/f.bin"),
        "checksums": (parse_checksum_spec(SHA),),
    }
    return DownloadSpec(**(fields | changes))  # type: ignore[arg-type]


def test_the_cli_sends_what_it_sent_before() -> None:
    sent = create_request(_spec(), "f.bin").as_json()
    assert sent == {
        "url": "https://example.test/f.bin",
        "output": "f.bin",
        "checksums": [SHA],
        "force": False,
        "restart_if_changed": False,
        "verify_sample": 0.01,
    }
    assert CreateDownload.model_validate(sent).as_json() == sent
    assert create_request(_spec(max_size=5), None).as_json()["max_size"] == 5


def test_a_request_the_node_would_refuse_is_a_usage_error() -> None:
    with pytest.raises(e.UsageError, match="url"):
        create_request(_spec(url="https://example.test/" + "a" * 9000), None)


@pytest.mark.parametrize("body", [{"url": "u", "extra": 1}, {"url": "u", "verify_sample": 2}])
def test_the_api_refuses_what_the_model_does_not_allow(body: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        CreateDownload.model_validate(body)


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ({"error": "bad", "code": "invalid_url"}, e.InvalidURL),
        ({"error": "bad", "code": "invalid_checksum"}, e.InvalidChecksum),
        ({"error": "bad", "code": "bad_request"}, e.UsageError),
        ({"error": "bad", "code": "checksum_mismatch"}, e.UsageError),  # not a usage code
        ({"error": "bad"}, e.UsageError),
        ("not an object", e.UsageError),
    ],
)
def test_a_refusal_is_the_usage_error_its_code_names(answer: object, kind: type) -> None:
    assert type(_refused(400, answer)) is kind


def test_a_failed_download_is_read_back_by_its_code() -> None:
    made = error_from_json({"code": "checksum_mismatch", "message": "digest differs"})
    assert type(made) is e.ChecksumMismatch
    assert str(made) == "digest differs"
    assert type(error_from_json({"code": "what", "message": "m"})) is e.DownloadError
