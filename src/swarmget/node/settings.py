"""A node's helper settings changed at run time (the portal's settings form, ``PUT
/v1/settings``): slots, the rate limit, the daily quota and "pause helping".

A value set at run time is kept in ``settings.json`` in the node's state directory and wins
over the config file's at every start; ``reset`` drops it (the config file's value is back).
``view()`` tells, for each setting, the value in force and where it comes from. A change is
applied to the helper at once: new streams see the new slots, quota and pause; the rate
limit applies to the streams in flight too (they share one token bucket).

"Pause helping" keeps the node registered with its hub (its own downloads still use the
swarm) and refuses new helper streams with ``helping_paused`` (503, Retry-After): health
checks are refused the same way, so requesters pass it by; streams in flight finish.

The file is read like network input: through the directory's descriptor, ``O_NOFOLLOW``,
a regular file owned by the node's user and not writable by others (else the node refuses
to start: someone else could set its limits), at most ``MAX_FILE`` bytes, and validated by
the same model the API takes (a file that does not parse is ignored, with a warning).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from swarmget.core.errors import UsageError
from swarmget.node.helper_service import HelperService
from swarmget.node.quota import DailyQuota
from swarmget.node.statefiles import write_private
from swarmget.protocol.user import SettingSource, SettingsUpdate, SettingsView, SettingValue

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
QUOTA_FILE = "quota.json"
MAX_FILE = 4096
NAMES = ("slots", "rate_limit", "daily_quota", "helping_paused")


@dataclass(frozen=True, kw_only=True)
class ConfiguredSettings:
    """The values the config file (or the command line, or the defaults) gives."""

    slots: int
    rate_limit: int | None = None
    daily_quota: int | None = None
    helping_paused: bool = False


def read_kept(state_dir: Path) -> dict[str, Any]:
    """The settings kept in ``state_dir`` (empty when there are none or they do not parse);
    ``UsageError`` when the file is not safely the node's own."""
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fd = os.open(SETTINGS_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            return {}
        except OSError as exc:  # ELOOP: a symlink planted there
            raise UsageError(f"{state_dir / SETTINGS_FILE} cannot be opened safely: {exc}") from exc
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise UsageError(
                    f"{state_dir / SETTINGS_FILE} is not a file of the node's user that only "
                    "it may write: remove it (the config file's settings apply again)"
                )
            raw = f.read(MAX_FILE + 1)
    finally:
        os.close(dir_fd)
    try:
        if len(raw) > MAX_FILE:
            raise ValueError("too large")
        update = SettingsUpdate.model_validate(json.loads(raw))
    except (ValueError, RecursionError) as exc:  # ValidationError is a ValueError
        log.warning("ignoring %s: %s", state_dir / SETTINGS_FILE, _short(exc))
        return {}
    return update.changes()


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return str(exc.errors()[0]["msg"])
    return str(exc) or type(exc).__name__


class RuntimeSettings:
    """The helper settings in force: the config file's, overridden by the kept ones."""

    def __init__(
        self, state_dir: Path, configured: ConfiguredSettings, helper: HelperService
    ) -> None:
        self._dir = state_dir
        self._configured = configured
        self._helper = helper
        self._kept = read_kept(state_dir)
        self._apply()

    def value(self, name: str) -> Any:
        return self._kept[name] if name in self._kept else getattr(self._configured, name)

    def view(self) -> SettingsView:
        def one(name: str) -> SettingValue:
            source = SettingSource.RUNTIME if name in self._kept else SettingSource.CONFIG
            return SettingValue(value=self.value(name), source=source)

        return SettingsView(**{name: one(name) for name in NAMES})

    def update(self, change: SettingsUpdate) -> SettingsView:
        """Apply ``change`` (validated by its model), keep it, and answer the new view."""
        kept = {k: v for k, v in self._kept.items() if k not in change.reset}
        kept.update(change.changes())
        write_private(self._dir / SETTINGS_FILE, json.dumps(kept, sort_keys=True).encode())
        self._kept = kept
        self._apply()
        log.info("helper settings changed: %s", {n: self.value(n) for n in NAMES})
        return self.view()

    def _apply(self) -> None:
        helper = self._helper
        helper.set_slots(self.value("slots"))
        rate = self.value("rate_limit")
        helper.set_rate_limit(None if rate is None else float(rate))
        helper.paused = bool(self.value("helping_paused"))
        limit = self.value("daily_quota")
        if limit is None:
            if helper.quota is not None:
                helper.quota.save()
            helper.quota = None
        elif helper.quota is None:
            helper.quota = DailyQuota(self._dir / QUOTA_FILE, limit, clock=time.time)
        else:
            helper.quota.limit = limit
