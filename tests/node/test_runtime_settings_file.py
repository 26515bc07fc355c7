"""The kept runtime settings (``node.settings``): read like network input (a planted symlink
or a file others may write stops the node with a clear error, a file that does not parse
is ignored), written 0600, and applied to the helper at once: slots, the rate limit (the
running streams' bucket too), the daily quota (made, changed, dropped) and "pause helping"."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import cast

import pytest

from swarmget.core.errors import UsageError
from swarmget.net.origin import OriginClient
from swarmget.node.helper_service import HelperLimits, HelperService
from swarmget.node.range_stream import Refusal
from swarmget.node.settings import SETTINGS_FILE, ConfiguredSettings, RuntimeSettings
from swarmget.protocol.user import SettingsUpdate

CONFIGURED = ConfiguredSettings(slots=3, rate_limit=None, daily_quota=None)


def helper() -> HelperService:
    return HelperService(cast(OriginClient, None), HelperLimits(slots=3))


def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


def test_a_planted_symlink_is_refused(tmp_path: Path) -> None:
    state = state_dir(tmp_path)
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"slots": 99}))
    os.symlink(target, state / SETTINGS_FILE)
    with pytest.raises(UsageError, match="cannot be opened safely"):
        RuntimeSettings(state, CONFIGURED, helper())


def test_a_file_others_may_write_is_refused(tmp_path: Path) -> None:
    state = state_dir(tmp_path)
    (state / SETTINGS_FILE).write_text(json.dumps({"slots": 99}))
    (state / SETTINGS_FILE).chmod(0o622)
    with pytest.raises(UsageError, match="only it may write"):
        RuntimeSettings(state, CONFIGURED, helper())


@pytest.mark.parametrize("raw", ["{not json", '{"slots": 0}', '{"evil": 1}', "x" * 5000])
def test_a_file_that_does_not_parse_is_ignored(
    tmp_path: Path, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    state = state_dir(tmp_path)
    (state / SETTINGS_FILE).write_text(raw)
    (state / SETTINGS_FILE).chmod(0o600)
    service = helper()
    with caplog.at_level(logging.WARNING):
        settings = RuntimeSettings(state, CONFIGURED, service)
    assert settings.view().slots.source == "config"
    assert service.limits.slots == 3
    assert "ignoring" in caplog.text


def test_changes_apply_at_once_and_are_kept_private(tmp_path: Path) -> None:
    state = state_dir(tmp_path)
    service = helper()
    settings = RuntimeSettings(state, CONFIGURED, service)
    settings.update(SettingsUpdate(slots=5, rate_limit=4096, daily_quota=10_000))
    assert service.limits.slots == 5
    assert service.quota is not None
    assert service.quota.limit == 10_000
    bucket = service._bucket
    assert bucket is not None
    assert bucket.rate == 4096
    settings.update(SettingsUpdate(rate_limit=8192))
    assert service._bucket is bucket  # the running streams' bucket: changed, not replaced
    assert bucket.rate == 8192
    assert (state / SETTINGS_FILE).stat().st_mode & 0o777 == 0o600
    assert json.loads((state / SETTINGS_FILE).read_text()) == {
        "slots": 5, "rate_limit": 8192, "daily_quota": 10_000,
    }  # fmt: skip

    settings.update(SettingsUpdate.model_validate({"daily_quota": None, "rate_limit": None}))
    assert service.quota is None
    assert service._bucket is None
    assert settings.view().daily_quota.source == "runtime"  # "no quota", set here

    settings.update(SettingsUpdate(helping_paused=True))
    with pytest.raises(Refusal) as refused:
        service.admit("someone", 100)
    assert refused.value.code == "helping_paused"
    assert refused.value.status == 503
    settings.update(SettingsUpdate(reset=["helping_paused", "slots"]))
    service.admit("someone", 100)
    assert service.limits.slots == 3

    again = helper()
    assert RuntimeSettings(state, CONFIGURED, again).value("daily_quota") is None
    assert again.limits.slots == 3
