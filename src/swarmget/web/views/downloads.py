"""The downloads list: one ``DownloadRow`` per download, from the user API's JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarmget.core.lifecycle import DownloadState, parse_state
from swarmget.web.humanize import human_bytes, human_duration, human_rate
from swarmget.web.views.common import display_name
from swarmget.web.views.errors import PlainError, plain_error


@dataclass(frozen=True, kw_only=True)
class DownloadRow:
    id: str
    name: str
    url: str
    state: str  # a DownloadState's value (an unknown one is shown as it came)
    stage: str
    size: str
    done: str
    percent: float | None  # None: size not known yet
    rate: str
    eta: str
    elapsed: str
    error: str | None
    error_code: str | None
    verified: str | None
    can_cancel: bool
    can_retry: bool
    can_pause: bool = False
    can_resume: bool = False
    can_remove: bool = False  # it does not run: it may leave the list (and its file go)
    problem: PlainError | None = None  # the error in plain words (raw text behind a toggle)

    @property
    def percent_text(self) -> str:
        return "…" if self.percent is None else f"{self.percent:.0f}%"


def download_row(d: Mapping[str, Any]) -> DownloadRow:
    state = str(d["state"])
    known = parse_state(state)
    is_done = known is DownloadState.DONE
    progress: Mapping[str, Any] = d.get("progress") or {}
    result: Mapping[str, Any] | None = d.get("result")
    error: Mapping[str, Any] | None = d.get("error")
    size = result["size"] if result else progress.get("size")
    done = size if is_done else progress.get("done", 0)
    elapsed = result["elapsed"] if result else progress.get("elapsed")
    running = known is not None and known.active
    if running:
        rate = progress.get("rate")
    else:
        rate = _average_rate(result, elapsed) if is_done else None
    return DownloadRow(
        id=str(d["id"]),
        name=display_name(d),
        url=str(d["url"]),
        state=state,
        stage=str(progress.get("stage", state)),
        size=human_bytes(size),
        done=human_bytes(done),
        percent=_percent(is_done, done, size),
        rate=human_rate(rate),
        eta=human_duration(progress.get("eta")) if running else "—",
        elapsed=human_duration(elapsed),
        error=str(error["message"]) if error else None,
        error_code=str(error["code"]) if error else None,
        verified=", ".join(result["verified"]) or "size" if result else None,
        can_cancel=running or known is DownloadState.PAUSED,
        can_retry=known is not None and known.retryable,
        can_pause=known is not None and known.pausable,
        can_resume=known is DownloadState.PAUSED,
        can_remove=known is not None and not known.active,
        problem=plain_error(error),
    )


def _average_rate(result: Mapping[str, Any] | None, elapsed: float | None) -> float | None:
    """This run's bytes over this run's time: bytes resumed from an earlier run were not
    fetched now and do not count."""
    if not result or not elapsed:
        return None
    fetched = result.get("fetched_bytes")
    if fetched is None:
        fetched = int(result.get("size") or 0) - int(result.get("resumed_bytes") or 0)
    return fetched / elapsed if fetched > 0 else None


def _percent(is_done: bool, done: int | None, size: int | None) -> float | None:
    if is_done:
        return 100.0
    if not size:
        return None
    return min(100.0, 100.0 * (done or 0) / size)
