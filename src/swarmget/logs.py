"""Logging for the long-running commands: text for people, JSON lines for machines.

``setup_logging`` puts one handler on the *root* logger, so every logger of the process
(swarmget's, aiohttp's access and server errors with their tracebacks, asyncio's "Task
exception was never retrieved", SQLAlchemy's) comes out in the chosen format; so do Python
warnings and an uncaught exception's traceback (``sys.excepthook``). The JSON lines are made
by python-json-logger: one object per line with ``ts`` (Unix seconds), ``time`` (UTC, ISO
8601), ``level``, ``logger``, ``msg`` and, when there is one, ``exc`` (the traceback as one
string) and ``download_id``.

Every record logged while a download runs carries that download's id (a context variable
set by the download's task), so ``--log-format json`` output can be filtered per download.
Every URL in a message is written as ``core.urls.redact_url`` shows it (query values,
userinfo and fragment replaced): the code logs redacted URLs already, and this is the net
under it, because a log ends up in places (the journal, a ticket) a signed link must not.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
from types import TracebackType
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from swarmget.core.urls import redact_url

#: The id of the download the current task works for (None outside downloads).
current_download: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "swarmget_download", default=None
)

#: ``--log-level`` choices, by name
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
LOG_FORMATS = ("text", "json")


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


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger's formatter with swarmget's field names."""

    def __init__(self) -> None:
        super().__init__(
            "{created}{levelname}{name}{message}",
            style="{",
            rename_fields={
                "created": "ts",
                "levelname": "level",
                "name": "logger",
                "message": "msg",
                "exc_info": "exc",
            },
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        created = float(log_data["ts"])
        log_data["ts"] = round(created, 3)
        log_data["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
        log_data["level"] = str(log_data["level"]).lower()
        if log_data.get("download_id") is None:
            log_data.pop("download_id", None)
        return log_data


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        download_id = getattr(record, "download_id", None)
        return text if download_id is None else f"{text} [download {download_id}]"


class _ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler ``setup_logging`` installs (a second call replaces it)."""


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("swarmget").critical("uncaught exception", exc_info=(kind, exc, tb))


def json_logging() -> bool:
    """Whether ``setup_logging`` made this process log JSON lines."""
    return any(
        isinstance(h, _ServiceHandler) and isinstance(h.formatter, JsonFormatter)
        for h in logging.getLogger().handlers
    )


def parse_level(name: str) -> int:
    """The logging level called ``name`` (``LEVELS``); ValueError names the choices."""
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"log level {name!r}: expected one of {', '.join(LEVELS)}") from None


def setup_logging(log_format: str = "text", level: str | int = logging.INFO) -> None:
    """Send every logger's records to stderr (stdout is for the announce line and results),
    as text or JSON lines, from ``level`` up."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: expected text or json")
    handler = _ServiceHandler(sys.stderr)
    handler.addFilter(_DownloadIdFilter())
    handler.addFilter(_RedactUrls())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ServiceHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(level) if isinstance(level, str) else level)
    ours = logging.getLogger("swarmget")
    ours.handlers.clear()
    ours.propagate = True
    ours.setLevel(logging.NOTSET)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
