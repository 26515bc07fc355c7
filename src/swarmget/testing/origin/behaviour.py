"""The test origin's switchable misbehaviour (``Behaviour``), its counters and the snapshot
of them tests read (``OriginStats``), and the constants the other parts share."""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

KiB = 1024
MiB = 1024 * KiB
UNTHROTTLED_CHUNK = 256 * KiB
MAX_THROTTLED_CHUNK = 64 * KiB
GENERATED_BLOCK = 1 * MiB
ROTATION = 0x9E3779B1  # odd, so blocks i < 2**20 of a generated file get distinct rotations
SERVED_LOG_LIMIT = 100_000
GENERATED_MTIME = 1_700_000_000  # Last-Modified of generated files (version 0)
VERSION_MTIME_STEP = 3600  # each new version of a file is one hour newer
DRAIN_TIMEOUT = 1.0  # how long a drop waits for the client to read what was sent
SHUTDOWN_TIMEOUT = 1.0  # how long close() lets in-flight responses finish


@dataclass(frozen=True, kw_only=True)
class Behaviour:
    """How (badly) the origin behaves. The defaults are a well-behaved server."""

    ignore_range: bool = False  # answer Range requests with 200 and the whole body
    no_content_length: bool = False  # chunked bodies, no length anywhere, no range support
    etag_change_after: int | None = None  # after N body bytes of a file, it changes
    drop_after: int | None = None  # abort the connection after N body bytes of a response
    drop_count: int | None = None  # how many responses to drop (None: every one)
    lie_content_range: bool = False  # 206 carries a Content-Range other than the one sent
    lie_content_range_every: int | None = None  # ... only every Nth 206 (N=3: 3rd, 6th ...)
    unavailable_count: int = 0  # the next N /files requests get `unavailable_status`
    unavailable_status: int = 503
    retry_after: int | None = 1  # seconds in Retry-After on those (None: no header)
    first_byte_delay: float = 0.0  # seconds before the response headers
    rate_per_ip: float | None = None  # bytes/s shared by every connection from one IP
    rate_per_conn: float | None = None  # bytes/s for each response
    announce_size: int | None = None  # HEAD's Content-Length, a 206's total claim this size
    weak_etag: bool = False  # send the ETag as a weak one (W/"..."): no byte-for-byte promise

    def __post_init__(self) -> None:
        if self.lie_content_range_every is not None and self.lie_content_range_every < 1:
            raise ValueError("lie_content_range_every must be >= 1")
        for name in (
            "etag_change_after",
            "drop_after",
            "drop_count",
            "retry_after",
            "announce_size",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.unavailable_count < 0 or self.first_byte_delay < 0:
            raise ValueError("unavailable_count and first_byte_delay must be >= 0")
        if not 400 <= self.unavailable_status <= 599:
            raise ValueError(f"unavailable_status must be 4xx or 5xx: {self.unavailable_status}")
        for name in ("rate_per_ip", "rate_per_conn"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")


BEHAVIOUR_FIELDS = frozenset(f.name for f in dataclasses.fields(Behaviour))
_BEHAVIOUR_ADAPTER = pydantic.TypeAdapter(Behaviour)


def behaviour_from_json(current: Behaviour, body: bytes) -> Behaviour:
    """``current`` updated with a JSON object of fields; ValueError if it is not valid."""
    try:
        update = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(update, dict):
        raise ValueError("expected a JSON object")
    if unknown := sorted(set(update) - BEHAVIOUR_FIELDS):
        raise ValueError(f"unknown behaviour fields: {', '.join(unknown)}")
    merged = json.dumps({**dataclasses.asdict(current), **update})
    try:
        return _BEHAVIOUR_ADAPTER.validate_json(merged, strict=True)
    except pydantic.ValidationError as exc:
        raise ValueError(str(exc)) from exc


@dataclass(frozen=True, kw_only=True)
class ServedRange:
    """One GET /files response: what was planned (``start``..``end_exclusive``) and sent."""

    ip: str
    file: str
    start: int
    end_exclusive: int
    bytes_sent: int
    status: int


@dataclass(frozen=True, kw_only=True)
class OriginStats:
    """A snapshot of the origin's counters (``/_reset`` zeroes all but the open ones)."""

    bytes_total: int
    bytes_by_ip: Mapping[str, int]
    bytes_by_file: Mapping[str, int]
    requests_by_method: Mapping[str, int]
    open_responses_by_ip: Mapping[str, int]  # handlers running, by client IP
    open_connections_by_ip: Mapping[str, int]  # TCP connections, by client IP
    file_versions: Mapping[str, int]  # 0 until etag_change_after changes a file
    served: tuple[ServedRange, ...]

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in out.items()}
        out["served"] = [dataclasses.asdict(s) for s in self.served]
        return out


@dataclass(kw_only=True)
class Counters:
    """What the origin counts (``/_reset`` starts them over)."""

    bytes_total: int = 0
    bytes_by_ip: collections.Counter[str] = field(default_factory=collections.Counter)
    bytes_by_file: collections.Counter[str] = field(default_factory=collections.Counter)
    requests_by_method: collections.Counter[str] = field(default_factory=collections.Counter)
    served: collections.deque[ServedRange] = field(
        default_factory=lambda: collections.deque(maxlen=SERVED_LOG_LIMIT)
    )


# --- files -------------------------------------------------------------------------------------
