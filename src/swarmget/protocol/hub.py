"""What nodes and the hub send each other about nodes, defined once for both sides.

A node's heartbeat carries its helper's ``PeerStats``; ``GET /v1/peers`` lists ``PeerEntry``
records. Both are validated wherever they arrive, because one member with a bug (or with
the secret and bad intentions) must not break anyone else's pages or downloads:

* types are strict: a count is a JSON integer, never a string, a float or a boolean;
* numbers are bounded: counts and byte sizes are 0 … 2**63 - 1, slots 0 … ``MAX_SLOTS``,
  times finite and non-negative; strings have a length and character set;
* stats are a whitelist: fields not listed here are dropped (a newer node may report
  more), so what the hub stores and lists per node stays a few hundred bytes.

The hub refuses a malformed registration or heartbeat (400) and never lists more than
``MAX_PEERS_PER_ANSWER`` peers; a node skips a malformed peer entry of the hub's answer and
keeps the valid ones, and reads at most ``MAX_HUB_ANSWER_BYTES`` of any answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    field_validator,
    model_validator,
)

from swarmget.core.auth import is_valid_node_id
from swarmget.core.groups import canonical_address, is_valid_group_name
from swarmget.core.replicas import ReplicaState
from swarmget.core.session_auth import decode_public_key, is_valid_session_id

__all__ = [
    "MAX_COUNT",
    "MAX_HUB_ANSWER_BYTES",
    "MAX_HUB_BODY",
    "MAX_PEERS_PER_ANSWER",
    "MAX_SLOTS",
    "PEERS_PATH",
    "REQUESTER_PARAM",
    "REQUESTER_VALUE",
    "VERSION_PATTERN",
    "HeartbeatAnswer",
    "HeartbeatRequest",
    "PeerEntry",
    "PeerStats",
    "PeersAnswer",
    "REPLICA_ID_PATTERN",
    "RegisterAnswer",
    "ReplicaNews",
    "RegisterRequest",
    "SessionGrant",
    "SessionRequest",
    "session_path",
    "peer_url",
    "replica_watch_path",
    "requester_query",
]

#: The largest count or byte size anyone reports (a signed 64-bit column in the database).
MAX_COUNT = 2**63 - 1
#: The most slots a node may offer (and the most streams it may report active).
MAX_SLOTS = 4096
#: Bytes of JSON the hub reads of a register or heartbeat request; more is refused (413).
MAX_HUB_BODY = 4096
#: The most peers one ``GET /v1/peers`` answer lists (chosen by ``swarmget.hub.selection``).
MAX_PEERS_PER_ANSWER = 64
#: Bytes a node reads of any hub answer; a longer one is treated as a broken hub.
MAX_HUB_ANSWER_BYTES = 1024 * 1024
#: Versions are 1-64 characters of PEP 440 / semver: no spaces, brackets or quotes, which a
#: terminal table (rich markup) or a log line would interpret.
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}$"

#: Where nodes (and requester-only askers) ask for the live peers of their group.
PEERS_PATH = "/v1/peers"
#: ``GET /v1/peers?requester=1``: the asker is a requester only (``swarmget get --hub``): it
#: signs its request like any node but never registers, so the hub groups it by the address
#: it sees the request come from (as it groups a node that declares no group) instead of by
#: its registration. Any other value of the parameter is refused (400 ``bad_request``). A
#: hub older than this addition ignores the parameter and answers 404 ``unknown_node``.
REQUESTER_PARAM = "requester"
REQUESTER_VALUE = "1"

#: A hub replica's id (``swarmget.hub.replicas``): 16 lowercase hex digits, new per process.
REPLICA_ID_PATTERN = r"^[0-9a-f]{16}$"
_ReplicaId = Annotated[str, Field(pattern=REPLICA_ID_PATTERN)]

_Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
_Slots = Annotated[int, Field(ge=0, le=MAX_SLOTS)]
_Time = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_STRICT = ConfigDict(frozen=True, extra="ignore", strict=True)


class PeerStats(BaseModel):
    """A helper's statistics, as a node reports them with each heartbeat
    (``swarmget.node.helper.HelperService.statistics``). None: not reported."""

    model_config = _STRICT

    slots: _Slots | None = None
    active_streams: _Slots | None = None
    streams_served: _Count | None = None
    bytes_served: _Count | None = None
    refused: _Count | None = None
    quota_left: _Count | None = None
    rate_limit: float | None = Field(default=None, ge=0, le=MAX_COUNT, allow_inf_nan=False)
    version: str | None = Field(default=None, pattern=VERSION_PATTERN)

    def as_json(self) -> dict[str, Any]:
        """The reported fields only (what the hub stores and lists)."""
        return self.model_dump(exclude_none=True)


def _valid_node_id(value: str) -> str:
    if not is_valid_node_id(value):
        raise ValueError("not a valid node id")
    return value


#: A node id as another node or the hub sends it (``core.auth.is_valid_node_id``).
NodeId = Annotated[StrictStr, AfterValidator(_valid_node_id)]


class PeerEntry(BaseModel):
    """One live node of the asker's group, as ``GET /v1/peers`` lists it. ``url`` must be
    the one the hub builds from ``address`` and ``port`` (``peer_url``)."""

    model_config = _STRICT

    node_id: NodeId
    address: str = Field(max_length=64)
    port: int = Field(ge=1, le=65535)
    url: str = Field(max_length=300)
    version: str = Field(pattern=VERSION_PATTERN)
    slots: _Slots
    group: str = Field(pattern=r"^[A-Za-z0-9._:/%-]{1,128}$")
    wan_rate: _Count | None = None
    quota_left: _Count | None = None
    registered_at: _Time = 0.0
    last_seen: _Time = 0.0
    stats: PeerStats = PeerStats()

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if canonical_address(value) != value:  # ValueError for what is not an IP address
            raise ValueError("not a canonical IP address")
        return value

    @model_validator(mode="after")
    def _url(self) -> PeerEntry:
        if self.url not in (peer_url(s, self.address, self.port) for s in ("http", "https")):
            raise ValueError("url is not http(s)://address:port")
        return self

    def as_json(self) -> dict[str, Any]:
        """The entry as the hub lists it (stats: the reported fields only)."""
        return self.model_dump(exclude={"stats"}) | {"stats": self.stats.as_json()}


class PeersAnswer(BaseModel):
    """The frame of a ``GET /v1/peers`` answer: the asker's group and some of its live
    peers; ``total``: how many there are in all (None: a hub older than the field). The
    entries are checked one by one (``PeerEntry``): a malformed one is skipped, not fatal."""

    model_config = ConfigDict(frozen=True)

    group: str
    peers: list[Any]
    total: int | None = Field(default=None, ge=0)


class RegisterRequest(BaseModel):
    """What a node says about itself. Unknown fields (e.g. a claimed address) are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    node_id: str
    port: int = Field(ge=1, le=65535)
    version: str = Field(pattern=VERSION_PATTERN)
    slots: int = Field(ge=0, le=MAX_SLOTS)
    group: str | None = None
    wan_rate: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    quota_left: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    scheme: Literal["http", "https"] = "http"
    #: the node's ephemeral X25519 public key (base64url): the hub answers a ``session``
    #: (``swarmget.core.session_auth``); None: the node signs every request with its key
    session_key: str | None = None

    @field_validator("session_key")
    @classmethod
    def _session_key(cls, value: str | None) -> str | None:
        return _x25519_key(value)

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        if not is_valid_node_id(value):
            raise ValueError("node ids are 1-128 characters of A-Z a-z 0-9 . _ : -")
        return value

    @field_validator("group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_group_name(value):
            raise ValueError("group names are 1-64 characters of A-Z a-z 0-9 . _ : / -")
        return value


class HeartbeatRequest(BaseModel):
    """A node's latest statistics; fields outside ``PeerStats`` are dropped.

    ``session_key``: a node that holds no session with this hub process (it moved here from
    another replica, or the hub restarted) sends its ephemeral X25519 public key in a
    heartbeat **signed with its node key**, and the answer carries the ``session``: the
    re-key done by the heartbeat itself, not by a second request (``POST
    /v1/nodes/{id}/session``, which a hub older than this field still needs: it ignores
    the field and answers no session)."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    stats: PeerStats = PeerStats()
    session_key: str | None = None

    @field_validator("session_key")
    @classmethod
    def _session_key(cls, value: str | None) -> str | None:
        return _x25519_key(value)


def _x25519_key(value: str | None) -> str | None:
    """A session key field: None, or a 32-byte X25519 public key in base64url."""
    if value is not None and decode_public_key(value) is None:
        raise ValueError("a 32-byte X25519 public key in base64url (no padding)")
    return value


class SessionRequest(BaseModel):
    """``POST /v1/nodes/{id}/session`` (signed with the node key): agree on a new session
    with this hub process (``swarmget.core.session_auth``) without registering again."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    session_key: str

    @field_validator("session_key")
    @classmethod
    def _session_key(cls, value: str) -> str:
        _x25519_key(value)
        return value


class SessionGrant(BaseModel):
    """The hub's half of a session agreement: the session id and its ephemeral X25519
    public key (base64url). The answer to ``SessionRequest``, and ``session`` of a
    ``RegisterAnswer`` or ``HeartbeatAnswer`` when the request sent a key."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    hub_key: str

    @field_validator("session_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not is_valid_session_id(value):
            raise ValueError("not a session id")
        return value

    @field_validator("hub_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if decode_public_key(value) is None:
            raise ValueError("not an X25519 public key")
        return value


class RegisterAnswer(BaseModel):
    """The hub's answer to a registration: how it sees the node (``address`` and ``group``
    as the hub decided them, ``url`` its peer API) and how often to heartbeat."""

    model_config = ConfigDict(frozen=True)

    node_id: str
    address: str
    group: str
    url: str
    ttl: float
    heartbeat_interval: float
    #: the session agreed (the registration sent ``session_key`` to a hub that keys
    #: sessions); None: sign with the node key
    session: SessionGrant | None = None
    #: the answering replica's id, which another replica can be asked to watch (None: a hub
    #: older than replica watching)
    replica: _ReplicaId | None = None


class HeartbeatAnswer(BaseModel):
    """The hub's answer to a heartbeat: how long the node stays live and when to heartbeat
    again (longer when the hub is strained: ``swarmget.hub.admission``)."""

    model_config = ConfigDict(frozen=True)

    ok: bool = True
    ttl: float = Field(gt=0, allow_inf_nan=False)
    heartbeat_interval: float = Field(gt=0, allow_inf_nan=False)
    #: as in ``RegisterAnswer``
    replica: _ReplicaId | None = None
    #: the session agreed when the heartbeat sent ``session_key`` (None: none was asked,
    #: or a hub older than that field: re-key with ``SessionRequest``)
    session: SessionGrant | None = None


def replica_watch_path(replica: str) -> str:
    """``GET`` this on one replica to hear when replica ``replica`` (of the same registry)
    is gone: the answer (a ``ReplicaNews``) comes when it is, or after the hub's hold time
    (``swarmget.hub.replicas``)."""
    return f"/v1/replicas/{replica}/watch"


class ReplicaNews(BaseModel):
    """A replica's answer to a watch: what it knows of the watched ``replica`` now."""

    model_config = ConfigDict(frozen=True)

    replica: _ReplicaId
    state: ReplicaState


def peer_url(scheme: str, address: str, port: int) -> str:
    """A node's peer API base URL, from the address the hub saw and the port it declared."""
    host = f"[{address.replace('%', '%25')}]" if ":" in address else address
    return f"{scheme}://{host}:{port}"


def session_path(node_id: str) -> str:
    """Where a registered node agrees on a new session with a hub process."""
    return f"/v1/nodes/{node_id}/session"


def requester_query() -> list[tuple[str, str]]:
    """The query items that make ``GET /v1/peers`` a requester-only query."""
    return [(REQUESTER_PARAM, REQUESTER_VALUE)]
