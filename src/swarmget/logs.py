"""Logging for the long-running commands: text for people, JSON lines for machines.

Every record logged while a download runs carries that download's id (a context variable
set by the download's task), so ``--log-format json`` output can be filtered per download.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

#: The id of the download the current task works for (None outside downloads).
current_download: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "swarmget_download", default=None
)


class _DownloadIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.download_id = current_download.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        download_id = getattr(record, "download_id", None)
        if download_id is not None:
            entry["download_id"] = download_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        download_id = getattr(record, "download_id", None)
        return text if download_id is None else f"{text} [download {download_id}]"


def setup_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send swarmget's logs to stderr (stdout is for the announce line and results)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_DownloadIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger("swarmget")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
