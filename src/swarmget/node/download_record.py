"""One download's record in a node (``DownloadRecord``) and its JSON view (``describe``).

The record is what ``node.downloads.DownloadManager`` keeps per download: the spec, the
lifecycle state (moved only through ``core.lifecycle``'s table), the task running it, and
what it found and measured. ``describe`` turns it into the user API's JSON
(``node.download_json``), also for a download of an earlier run of the node, as it was left.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from swarmget.core.errors import SwarmgetError
from swarmget.core.lifecycle import DownloadState, transition
from swarmget.core.savings import Speedup
from swarmget.engine import Download, DownloadProgress, DownloadResult, DownloadSpec
from swarmget.node.download_json import download_json, error_json
from swarmget.node.hub_report import HubReport
from swarmget.node.rates import RateSamples

__all__ = ["DownloadRecord", "describe"]


@dataclass
class DownloadRecord:
    """One download of the node: what was asked, where it is in its lifecycle, its task and
    what it found (kept across pauses and retries: the same id, the same record)."""

    id: str
    spec: DownloadSpec
    created: float
    only_helpers: tuple[str, ...] | None = None
    state: DownloadState = DownloadState.STARTING  # moved only by ``move`` (see core.lifecycle)
    download: Download | None = None
    result: DownloadResult | None = None
    error: SwarmgetError | None = None
    task: asyncio.Task[None] | None = None
    peers_checked: list[str] = field(default_factory=list)
    ended: float | None = None  # when it last reached a state that is not active
    #: its JSON view as an earlier run of the node left it (from the history); None once
    #: it runs again in this one
    saved: dict[str, Any] | None = None
    pause_requested: bool = False  # the task is being cancelled to pause, not to cancel
    rates: RateSamples = field(default_factory=RateSamples)  # this run's, for the chart
    speedup: Speedup | None = None  # once done: "how much faster than alone" (an estimate)
    #: what the hub said when asked for peers (None: no hub, or not asked yet)
    hub: HubReport | None = None

    def progress(self) -> DownloadProgress | None:
        return self.download.statistics() if self.download is not None else None

    def settled(self) -> bool:
        """No task of it runs (none was started, or its last one ended)."""
        return self.task is None or self.task.done()

    def move(self, target: DownloadState) -> None:
        """Go to ``target``; ``IllegalTransition`` if the lifecycle table forbids it."""
        self.state = transition(self.state, target)


def describe(
    record: DownloadRecord, *, events: int = 50, rates: bool | None = None
) -> dict[str, Any]:
    """The JSON view of one download for the user API (shape: ``node.download_json``); one
    of an earlier run of the node: as it was left, in its state now."""
    download = record.download
    if download is None and record.saved is not None:
        error = record.saved.get("error") if record.error is None else error_json(record.error)
        saved = {**record.saved, "state": record.state.value, "error": error, "events": []}
        if not (events if rates is None else rates):
            saved.pop("rates", None)
        return saved
    return download_json(
        download_id=record.id,
        url=record.spec.url,
        state=record.state,
        created=record.created,
        peers=record.peers_checked,
        error=record.error,
        progress=record.progress(),
        events=None if download is None else list(download.events)[-events:] if events else [],
        result=record.result,
        hub=record.hub,
        rates=record.rates.to_json() if (events if rates is None else rates) else None,
        speedup=record.speedup,
    )
