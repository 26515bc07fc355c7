"""Logging for the long-running commands: text for people, JSON lines for machines.

Every record logged while a download runs carries that download's id (a context variable
set by the download's task), so ``--log-format json`` output can be filtered per download.
Every URL in a message is written as ``core.urls.redact_url`` shows it (query values,
userinfo and fragment replaced): the code logs redacted URLs already, and this is the net
under it, because a log ends up in places (the journal, a ticket) a signed link must not.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time

from swarmget.core.urls import redact_url

#: The id of the download the current task works for (None outside downloads).
current_download: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "swarmget_download", default=None
)


class _DownloadIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.download_id = current_download.get()
        return True


_URL = re.compile(r"https?://[^\s'\"<>]+")


class _RedactUrls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _URL.sub(lambda m: redact_url(m.group(0)), message)
        if redacted != message:
            record.msg, record.args = redacted, None
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
    handler.addFilter(_RedactUrls())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger("swarmget")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
