"""The hub's registry of nodes: a narrow store interface and its SQL implementation.

A ``NodeRecord`` is what the hub knows about one node: where its peer API listens, what it
offers (slots, WAN rate, quota), which group it is in, when it registered and was last
seen, and the stats it reported with its last heartbeat. The store never reads the clock:
every call that depends on time takes ``now`` (unix seconds, the hub's clock), so tests
decide expiry by the ``now`` they pass, never by sleeping.

A node is *live* while ``now - last_seen <= ttl``. Records of dead nodes stay until
``prune`` removes them; a heartbeat with ``ttl`` given does not revive one (the node must
register again, which re-checks everything).

``SqlRegistryStore`` works on any SQLAlchemy async URL: ``sqlite+aiosqlite:///hub.db`` (the
default; WAL journal so readers never block the writer) or e.g.
``postgresql+asyncpg://user:pw@host/db``. It uses portable column types only and creates its
table on ``start`` (``metadata.create_all``, a no-op when it exists), and then any index a
database made by an older version lacks (``CREATE INDEX IF NOT EXISTS``). Queries go by index:
one group's live nodes by (group, last_seen), one node by its key, counts without loading
rows, so a peers answer costs one group's rows, not the whole registry. On SQLite, writers of
one process take turns (an ``asyncio.Lock``) instead of competing for the file lock in
threads until ``database is locked``. Database failures
surface as ``StorageError``. The in-memory fake is
``swarmget.testing.fakes.MemoryRegistryStore``.

Several hubs may share one database (a replicated hub: any of them answers any node, see
``swarmget.net.hub_client.HubPool``). The store keeps nothing in the process: every answer
comes from the database, and liveness is computed from ``last_seen`` there, so the hubs'
clocks must agree to well within a TTL (NTP; request signatures need that anyway). Writes
from several hubs at once are safe:

* a register is one ``INSERT ... ON CONFLICT (node_id) DO UPDATE`` on PostgreSQL and SQLite
  (atomic: no race between two hubs registering the same new node); on other databases an
  UPDATE-then-INSERT transaction, retried when a concurrent insert won the race;
* on PostgreSQL, ``start`` holds an advisory lock around ``create_all`` (two hubs starting on
  an empty database would otherwise both try to create the table), and ``prune`` runs in one
  hub at a time (the others skip it: two multi-row deletes could deadlock).

Seen request nonces (``remember_nonce``, the hub's ``swarmget.net.auth.SharedNonces``) are a
second table, ``hub_nonces``, keyed by (node id, nonce): the insert is atomic (``ON CONFLICT
DO NOTHING``; an ``IntegrityError`` elsewhere), so of two replicas given the same request
at once exactly one accepts it. Rows are kept until their signature window is over; expired
ones are deleted at most every ``NONCE_SWEEP_INTERVAL`` seconds per process (on PostgreSQL
by one hub at a time, like ``prune``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from swarmget.core.errors import StorageError, UsageError
from swarmget.db import create_db_engine
from swarmget.hub.batched_writes import Beat, Nonce, write_beats, write_nonces
from swarmget.hub.group_commit import GroupCommit
from swarmget.hub.schema import create_missing_indexes, metadata, nodes, nonces, replicas
from swarmget.hub.write_stats import WriteStats

__all__ = [
    "NodeRecord",
    "NONCE_SWEEP_INTERVAL",
    "RegistryStore",
    "SqlRegistryStore",
    "open_registry_store",
]

#: Tries of the portable UPDATE-then-INSERT when concurrent inserts keep winning.
PORTABLE_UPSERT_ATTEMPTS = 3
#: PostgreSQL advisory lock keys: arbitrary bigints, the same in every hub process.
_SCHEMA_LOCK = 0x5A4D_4745_0001
_PRUNE_LOCK = 0x5A4D_4745_0002
_NONCE_SWEEP_LOCK = 0x5A4D_4745_0003
#: Seconds between deletions of expired nonces (per hub process).
NONCE_SWEEP_INTERVAL = 5.0
#: Nodes written per transaction of a liveness flush (``record_seen``).
FLUSH_CHUNK = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    """One registered node. ``address`` is the source IP the hub saw, never a claim of
    the node's; ``url`` is its peer API base URL. ``wan_rate`` (bytes/s) and
    ``quota_left`` (bytes) are None when the node did not say. ``registered_at`` and
    ``last_seen`` are set by the store; ``stats`` is JSON-able."""

    node_id: str
    address: str
    port: int
    url: str
    version: str
    slots: int
    group: str
    wan_rate: int | None = None
    quota_left: int | None = None
    registered_at: float = 0.0
    last_seen: float = 0.0
    stats: Mapping[str, Any] = field(default_factory=dict)

    def is_live(self, now: float, ttl: float) -> bool:
        return now - self.last_seen <= ttl


class RegistryStore(Protocol):
    """Where the hub keeps its registry. Every method may block on I/O."""

    async def upsert_node(self, record: NodeRecord, now: float) -> NodeRecord:
        """Insert or replace the node; ``registered_at`` and ``last_seen`` become ``now``
        and ``stats`` are kept from the record. Returns the record as stored."""
        ...

    async def heartbeat(
        self, node_id: str, stats: Mapping[str, Any], now: float, *, ttl: float | None = None
    ) -> bool:
        """Mark the node seen at ``now`` with these stats. False when it is unknown, or
        (``ttl`` given) no longer live: then nothing changes and it must register again."""
        ...

    async def record_seen(self, seen: Sequence[Beat]) -> set[str]:
        """Write what a hub kept in memory (``swarmget.hub.liveness``): each node's
        ``last_seen`` (never moved back) and stats, in one transaction per few hundred
        nodes; ``ttl`` is not checked. Returns the ids of nodes not in the registry (any
        more)."""
        ...

    async def remove(self, node_id: str) -> bool:
        """Forget the node; False when it was not known."""
        ...

    async def live_nodes(self, now: float, ttl: float) -> list[NodeRecord]:
        """Every node seen within ``ttl`` seconds of ``now``, ordered by node id."""
        ...

    async def count_live_at(self, address: str, now: float, ttl: float, *, other_than: str) -> int:
        """How many nodes at ``address``, except ``other_than``, are live at ``now``."""
        ...

    async def live_in_group(self, group: str, now: float, ttl: float) -> list[NodeRecord]:
        """The live nodes of ``group``, ordered by node id."""
        ...

    async def live_node(self, node_id: str, now: float, ttl: float) -> NodeRecord | None:
        """The node, when it is live; else None."""
        ...

    async def count_live(self, now: float, ttl: float) -> int:
        """How many nodes are live."""
        ...

    async def fell_silent(self, since: float, before: float, *, limit: int) -> list[str]:
        """Ids of the nodes last seen in ``[since, before)`` (at most ``limit``, the newest
        silence first): those whose TTL ran out between two sweeps."""
        ...

    async def prune(self, before: float) -> int:
        """Forget nodes last seen before ``before``; returns how many."""
        ...

    async def beat_replica(self, replica: str) -> dict[str, int]:
        """Raise hub replica ``replica``'s counter by one (its row made when it has none:
        ``swarmget.hub.replicas``) and return every replica's counter after it, in one
        transaction."""
        ...

    async def replica_beats(self) -> dict[str, int]:
        """Every replica's counter."""
        ...

    async def forget_replicas(self, gone: Iterable[str]) -> None:
        """Delete these replicas' rows (a replica stopping; long-dead ones)."""
        ...

    async def close(self) -> None: ...


# --- SQL --------------------------------------------------------------------------------------


def _values(record: NodeRecord, now: float) -> dict[str, Any]:
    """The non-key columns for ``record`` registered at ``now``."""
    return {
        "address": record.address,
        "port": record.port,
        "url": record.url,
        "version": record.version,
        "slots": record.slots,
        "group_name": record.group,
        "wan_rate": record.wan_rate,
        "quota_left": record.quota_left,
        "registered_at": now,
        "last_seen": now,
        "stats": dict(record.stats),
    }


def _record(row: sa.Row[Any]) -> NodeRecord:
    m = row._mapping
    return NodeRecord(
        node_id=m["node_id"],
        address=m["address"],
        port=m["port"],
        url=m["url"],
        version=m["version"],
        slots=m["slots"],
        group=m["group_name"],
        wan_rate=m["wan_rate"],
        quota_left=m["quota_left"],
        registered_at=m["registered_at"],
        last_seen=m["last_seen"],
        stats=dict(m["stats"] or {}),
    )


class SqlRegistryStore:
    """``RegistryStore`` on a SQLAlchemy async engine. Call ``start`` before use and
    ``close`` after (or use ``open_registry_store``)."""

    def __init__(self, url: str, *, on_conflict: bool | None = None) -> None:
        """Raises ``UsageError`` for a malformed URL or a database driver not installed.
        ``on_conflict`` False forces the portable upsert (None: native where supported)."""
        try:
            self._safe_url = make_url(url).render_as_string(hide_password=True)
            self._engine = create_db_engine(url)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            shown = getattr(self, "_safe_url", "(unparsable URL)")
            raise UsageError(f"unusable hub database URL {shown}: {exc}") from exc
        self._dialect = self._engine.dialect.name
        native = self._dialect in ("postgresql", "sqlite")
        self._on_conflict = native if on_conflict is None else on_conflict and native
        self._nonces_swept_at = float("-inf")
        #: SQLite writers of this process take turns (see module doc); None: the server locks.
        self._write_lock = asyncio.Lock() if self._dialect == "sqlite" else None
        #: Heartbeats and nonces written in batches while ``start``ed (see module doc).
        self.write_stats = WriteStats()
        self._beats = GroupCommit(self._write_beats, stats=self.write_stats, kind="beats")
        self._nonces = GroupCommit(self._write_nonces, stats=self.write_stats, kind="nonces")
        self._committers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Create the table if needed. Raises ``StorageError`` if the database is unusable."""
        self._check_sqlite_directory()
        try:
            async with self._engine.begin() as conn:
                if self._dialect == "postgresql":
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
                await conn.run_sync(metadata.create_all)
                await conn.run_sync(create_missing_indexes)
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"cannot open the hub database {self._safe_url}: {exc}") from exc
        self._committers = [asyncio.create_task(self._beats.run())]
        if self._on_conflict:
            self._committers.append(asyncio.create_task(self._nonces.run()))

    def _check_sqlite_directory(self) -> None:
        """A clear message (and no failed connect, which leaks an aiosqlite thread) when a
        SQLite file's directory does not exist."""
        url = self._engine.url
        database = url.database or ""
        if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
            return
        if database.startswith("file:"):
            return
        directory = os.path.dirname(os.path.abspath(database))
        if not os.path.isdir(directory):
            raise StorageError(
                f"cannot open the hub database {self._safe_url}: "
                f"directory {directory} does not exist"
            )

    async def close(self) -> None:
        for task in self._committers:
            task.cancel()
        await asyncio.gather(*self._committers, return_exceptions=True)
        self._committers = []
        await self._engine.dispose()

    async def _write_beats(self, beats: Sequence[Beat]) -> list[bool]:
        with self._translated():
            async with self._writing("beats") as conn:
                return await write_beats(conn, beats)

    async def _write_nonces(self, items: Sequence[Nonce]) -> list[bool]:
        with self._translated():
            async with self._writing("nonces") as conn:
                return await write_nonces(conn, self._dialect, items)

    async def record_seen(self, seen: Sequence[Beat]) -> set[str]:
        """In transactions of at most ``FLUSH_CHUNK`` nodes, so that the nonces' batches
        (on SQLite, behind the same writers' turn) never wait for a whole large flush."""
        gone: set[str] = set()
        for start in range(0, len(seen), FLUSH_CHUNK):
            chunk = [dataclasses.replace(b, ttl=None) for b in seen[start : start + FLUSH_CHUNK]]
            self.write_stats.sizes.observe("liveness", len(chunk))
            with self._translated():
                async with self._writing("liveness") as conn:
                    known = await write_beats(conn, chunk)
            gone.update(beat.node_id for beat, ok in zip(chunk, known, strict=True) if not ok)
        return gone

    @asynccontextmanager
    async def _writing(self, kind: str = "other") -> AsyncIterator[AsyncConnection]:
        """A transaction that writes (on SQLite, one of this process's at a time); its
        wait for a turn and a connection, and its duration, observed under ``kind``."""
        turn: AbstractAsyncContextManager[Any] = self._write_lock or nullcontext()
        asked = time.perf_counter()
        async with turn, self._engine.connect() as conn:
            began = time.perf_counter()
            self.write_stats.waits.observe(kind, began - asked)
            async with conn.begin():
                yield conn
            self.write_stats.transactions.observe(kind, time.perf_counter() - began)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Database failures become ``StorageError`` (the hub answers 503 for them)."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise StorageError(f"hub database {self._safe_url} failed: {exc}") from exc

    async def upsert_node(self, record: NodeRecord, now: float) -> NodeRecord:
        values = _values(record, now)
        with self._translated():
            if self._on_conflict:
                async with self._writing("register") as conn:
                    await conn.execute(self._insert_on_conflict(record.node_id, values))
            else:
                await self._upsert_portable(record.node_id, values)
        return dataclasses.replace(record, registered_at=now, last_seen=now)

    def _insert_on_conflict(self, node_id: str, values: dict[str, Any]) -> sa.Executable:
        """One atomic ``INSERT ... ON CONFLICT (node_id) DO UPDATE`` (PostgreSQL, SQLite)."""
        if self._dialect == "postgresql":
            pg = postgresql.insert(nodes).values(node_id=node_id, **values)
            return pg.on_conflict_do_update(index_elements=[nodes.c.node_id], set_=values)
        lite = sqlite.insert(nodes).values(node_id=node_id, **values)
        return lite.on_conflict_do_update(index_elements=[nodes.c.node_id], set_=values)

    async def _upsert_portable(self, node_id: str, values: dict[str, Any]) -> None:
        """UPDATE, else INSERT, in one transaction; when a concurrent register of the same
        new node inserted first (IntegrityError), the next try updates its row."""
        for attempt in range(1, PORTABLE_UPSERT_ATTEMPTS + 1):
            try:
                async with self._writing() as conn:
                    where = nodes.c.node_id == node_id
                    result = await conn.execute(sa.update(nodes).where(where).values(**values))
                    if result.rowcount == 0:
                        await conn.execute(sa.insert(nodes).values(node_id=node_id, **values))
                return
            except IntegrityError:
                if attempt == PORTABLE_UPSERT_ATTEMPTS:
                    raise

    async def heartbeat(
        self, node_id: str, stats: Mapping[str, Any], now: float, *, ttl: float | None = None
    ) -> bool:
        if self._committers:
            return await self._beats.submit(Beat(node_id, stats, now, ttl))
        stmt = sa.update(nodes).where(nodes.c.node_id == node_id)
        if ttl is not None:
            stmt = stmt.where(nodes.c.last_seen >= now - ttl)
        with self._translated():
            async with self._writing() as conn:
                result = await conn.execute(stmt.values(last_seen=now, stats=dict(stats)))
        return bool(result.rowcount == 1)

    async def remove(self, node_id: str) -> bool:
        with self._translated():
            async with self._writing() as conn:
                result = await conn.execute(sa.delete(nodes).where(nodes.c.node_id == node_id))
        return bool(result.rowcount == 1)

    async def live_nodes(self, now: float, ttl: float) -> list[NodeRecord]:
        query = sa.select(nodes).where(nodes.c.last_seen >= now - ttl).order_by(nodes.c.node_id)
        with self._translated():
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def count_live_at(self, address: str, now: float, ttl: float, *, other_than: str) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(nodes)
            .where(nodes.c.address == address)
            .where(nodes.c.last_seen >= now - ttl)
            .where(nodes.c.node_id != other_than)
        )
        with self._translated():
            async with self._engine.connect() as conn:
                return int((await conn.execute(query)).scalar_one())

    async def live_in_group(self, group: str, now: float, ttl: float) -> list[NodeRecord]:
        query = (
            sa.select(nodes)
            .where(nodes.c.group_name == group)
            .where(nodes.c.last_seen >= now - ttl)
            .order_by(nodes.c.node_id)
        )
        return await self._records(query)

    async def live_node(self, node_id: str, now: float, ttl: float) -> NodeRecord | None:
        query = sa.select(nodes).where(nodes.c.node_id == node_id)
        found = await self._records(query.where(nodes.c.last_seen >= now - ttl))
        return found[0] if found else None

    async def count_live(self, now: float, ttl: float) -> int:
        query = sa.select(sa.func.count()).select_from(nodes)
        with self._translated():
            async with self._engine.connect() as conn:
                where = nodes.c.last_seen >= now - ttl
                return int((await conn.execute(query.where(where))).scalar_one())

    async def fell_silent(self, since: float, before: float, *, limit: int) -> list[str]:
        seen = nodes.c.last_seen
        query = (
            sa.select(nodes.c.node_id)
            .where(seen >= since, seen < before)
            .order_by(seen.desc())
            .limit(limit)
        )
        with self._translated():
            async with self._engine.connect() as conn:
                return [str(row[0]) for row in (await conn.execute(query)).all()]

    async def _records(self, query: sa.Select[Any]) -> list[NodeRecord]:
        with self._translated():
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def prune(self, before: float) -> int:
        """On PostgreSQL, 0 at once when another hub is pruning (see module doc)."""
        with self._translated():
            async with self._writing() as conn:
                if self._dialect == "postgresql":
                    lock = sa.select(sa.func.pg_try_advisory_xact_lock(_PRUNE_LOCK))
                    if not (await conn.execute(lock)).scalar_one():
                        return 0
                result = await conn.execute(sa.delete(nodes).where(nodes.c.last_seen < before))
        return int(result.rowcount)

    async def beat_replica(self, replica: str) -> dict[str, int]:
        row = replicas.c.replica_id == replica
        everyone = sa.select(replicas.c.replica_id, replicas.c.beats)
        with self._translated():
            async with self._writing("replicas") as conn:
                raised = sa.update(replicas).where(row).values(beats=replicas.c.beats + 1)
                if (await conn.execute(raised)).rowcount == 0:
                    await conn.execute(sa.insert(replicas).values(replica_id=replica, beats=1))
                return {str(r): int(b) for r, b in (await conn.execute(everyone)).all()}

    async def replica_beats(self) -> dict[str, int]:
        query = sa.select(replicas.c.replica_id, replicas.c.beats)
        with self._translated():
            async with self._engine.connect() as conn:
                return {str(r): int(b) for r, b in (await conn.execute(query)).all()}

    async def forget_replicas(self, gone: Iterable[str]) -> None:
        ids = list(gone)
        if not ids:
            return
        with self._translated():
            async with self._writing("replicas") as conn:
                await conn.execute(sa.delete(replicas).where(replicas.c.replica_id.in_(ids)))

    async def remember_nonce(
        self, node_id: str, nonce: str, *, expires_at: float, now: float
    ) -> bool:
        """Record a request's nonce until ``expires_at``; False when it is there already
        (a replay, whichever replica saw it first). See the module doc."""
        row = {"node_id": node_id, "nonce": nonce, "expires_at": expires_at}
        with self._translated():
            await self._sweep_nonces(now)
            if self._on_conflict and self._committers:
                return await self._nonces.submit(Nonce(node_id, nonce, expires_at))
            if self._on_conflict:
                async with self._writing() as conn:
                    result = await conn.execute(self._insert_nonce(row))
                return bool(result.rowcount == 1)
            try:
                async with self._writing() as conn:
                    await conn.execute(sa.insert(nonces).values(**row))
            except IntegrityError:
                return False
        return True

    async def record_nonces(self, items: Sequence[Nonce], now: float) -> list[bool]:
        """Record many nonces at once (``swarmget.hub.nonce_log``: deferred ones), in
        transactions of at most ``FLUSH_CHUNK``; for each, whether it was new."""
        if not self._on_conflict:  # portable databases: one at a time, as remember_nonce
            out = []
            for item in items:
                expires_at = item.expires_at
                out.append(
                    await self.remember_nonce(
                        item.node_id, item.nonce, expires_at=expires_at, now=now
                    )
                )
            return out
        fresh: list[bool] = []
        with self._translated():
            await self._sweep_nonces(now)
            for start in range(0, len(items), FLUSH_CHUNK):
                chunk = items[start : start + FLUSH_CHUNK]
                self.write_stats.sizes.observe("nonce_log", len(chunk))
                async with self._writing("nonce_log") as conn:
                    fresh += await write_nonces(conn, self._dialect, chunk)
        return fresh

    def _insert_nonce(self, row: dict[str, Any]) -> sa.Executable:
        if self._dialect == "postgresql":
            return postgresql.insert(nonces).values(**row).on_conflict_do_nothing()
        return sqlite.insert(nonces).values(**row).on_conflict_do_nothing()

    async def _sweep_nonces(self, now: float) -> None:
        """Delete expired nonces, at most every ``NONCE_SWEEP_INTERVAL`` seconds."""
        if now - self._nonces_swept_at < NONCE_SWEEP_INTERVAL:
            return
        self._nonces_swept_at = now
        async with self._writing() as conn:
            if self._dialect == "postgresql":
                lock = sa.select(sa.func.pg_try_advisory_xact_lock(_NONCE_SWEEP_LOCK))
                if not (await conn.execute(lock)).scalar_one():
                    return
            await conn.execute(sa.delete(nonces).where(nonces.c.expires_at < now))

    async def count_nonces(self) -> int:
        """How many nonces are recorded (expired ones not yet swept included)."""
        with self._translated():
            async with self._engine.connect() as conn:
                query = sa.select(sa.func.count()).select_from(nonces)
                return int((await conn.execute(query)).scalar_one())


@asynccontextmanager
async def open_registry_store(url: str) -> AsyncIterator[SqlRegistryStore]:
    """A started ``SqlRegistryStore`` on ``url``, closed on exit."""
    store = SqlRegistryStore(url)
    try:
        await store.start()
        yield store
    finally:
        await store.close()
