"""The user API's messages: one CreateDownload for the CLI, the portal and the API."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from swarmget.core import errors as e
from swarmget.core.digests import parse_checksum_spec
from swarmget.engine import DownloadSpec
from swarmget.protocol.user import CreateDownload
from swarmget.protocol.user_create import create_body
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


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"output": None},
        {"max_size": 0},
        {"verify_sample": 0.0},
        {"verify_sample": 1.0},
        {"force": True, "restart_if_changed": True},
        {"checksums": ()},
        {"url": "https://example.test/" + "a" * (8192 - 21)},  # at the bound
    ],
)
def test_the_request_built_without_pydantic_is_the_models(changes: dict[str, object]) -> None:
    spec = _spec(**changes)
    output = None if "output" in changes else "f.bin"
    sent = create_request(spec, output).as_json()
    fields = {
        "url": spec.url,
        "output": output,
        "checksums": [str(d) for d in spec.checksums],
        "force": spec.force,
        "restart_if_changed": spec.restart_if_changed,
        "verify_sample": spec.verify_sample,
        "max_size": spec.max_size,
    }
    assert sent == CreateDownload(**fields).as_json()  # type: ignore[arg-type]
    assert create_body(**fields) == sent  # (the lean path was the one taken)


@pytest.mark.parametrize(
    ("changes", "output", "field"),
    [
        ({"url": "https://example.test/" + "a" * (8192 - 20)}, None, "url"),
        ({}, "o" * 4097, "output"),
        ({"checksums": (parse_checksum_spec(SHA),) * 9}, None, "checksums"),
        ({"max_size": -1}, None, "max_size"),
    ],
)
def test_outside_the_bounds_the_model_says_which_field(
    changes: dict[str, object], output: str | None, field: str
) -> None:
    with pytest.raises(e.UsageError, match=f"the node would refuse the download: {field}"):
        create_request(_spec(**changes), output)


@pytest.mark.parametrize("sample", [1.5, -0.1, float("nan"), float("inf"), 1])
def test_the_lean_body_leaves_what_it_cannot_vouch_for_to_the_model(sample: float) -> None:
    fields = {"url": "u", "output": None, "checksums": [], "force": False, "max_size": None}
    assert create_body(**fields, restart_if_changed=False, verify_sample=sample) is None


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
