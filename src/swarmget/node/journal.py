"""The node's list of unfinished downloads, kept across restarts.

A node that is stopped (SIGTERM, a reboot) cancels its downloads; their part files keep a
checkpoint. The journal (``downloads.json`` in the state directory, replaced atomically)
remembers what each unfinished download was asked for, so the next start of the node picks
them up again and they resume from their part files.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmget.core.digests import Digest, parse_checksum_spec
from swarmget.core.scheduler import SchedulerConfig
from swarmget.engine import DEFAULT_VERIFY_SAMPLE, DownloadSpec
from swarmget.node.statefiles import write_private

FORMAT = "swarmget-downloads-v1"


@dataclass(frozen=True)
class JournalEntry:
    id: str
    spec: DownloadSpec
    only_helpers: tuple[str, ...] | None


def spec_to_json(spec: DownloadSpec) -> dict[str, Any]:
    return {
        "url": spec.url,
        "output": None if spec.output is None else str(spec.output),
        "checksums": [str(d) for d in spec.checksums],
        "force": spec.force,
        "restart_if_changed": spec.restart_if_changed,
        "verify_sample": spec.verify_sample,
        "stall_timeout": spec.scheduler.stall_timeout,
        "max_size": spec.max_size,
    }


def spec_from_json(data: dict[str, Any]) -> DownloadSpec:
    checksums: tuple[Digest, ...] = tuple(parse_checksum_spec(c) for c in data["checksums"])
    return DownloadSpec(
        url=str(data["url"]),
        output=None if data["output"] is None else Path(data["output"]),
        checksums=checksums,
        force=bool(data["force"]),
        restart_if_changed=bool(data["restart_if_changed"]),
        verify_sample=float(data.get("verify_sample", DEFAULT_VERIFY_SAMPLE)),
        scheduler=SchedulerConfig(stall_timeout=float(data.get("stall_timeout", 15.0))),
        max_size=_size_or_none(data.get("max_size")),
    )


def _size_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"max_size must be a byte count, got {value!r}")
    return value


class DownloadJournal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[JournalEntry]:
        """The unfinished downloads recorded; an unreadable journal counts as empty."""
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") != FORMAT:
                return []
            return [
                JournalEntry(
                    id=str(item["id"]),
                    spec=spec_from_json(item["spec"]),
                    only_helpers=None
                    if item.get("helpers") is None
                    else tuple(str(h) for h in item["helpers"]),
                )
                for item in data["downloads"]
            ]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def save(self, entries: list[JournalEntry]) -> None:
        payload = {
            "format": FORMAT,
            "downloads": [
                {
                    "id": e.id,
                    "spec": spec_to_json(e.spec),
                    "helpers": None if e.only_helpers is None else list(e.only_helpers),
                }
                for e in entries
            ],
        }
        write_private(self.path, json.dumps(payload).encode())  # 0600, atomically

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
