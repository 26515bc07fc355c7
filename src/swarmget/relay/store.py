"""The relay's cache index: one row per cached file, in SQLAlchemy (SQLite by default).

A row of ``relay_entries`` maps the URL a client asked for to the blob it became
(content-addressed by sha256), with the origin's validator (for revalidation), the manifest of
per-piece hashes, and the times it was created and last used (for least-recently-used
eviction). A row of ``relay_fetches`` is the outcome of one finished fetch, kept for a while
so that clients can look it up by id while the relay keeps no finished fetch in memory.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from swarmget.core.errors import StorageError
from swarmget.core.lifecycle import FetchPhase, parse_phase
from swarmget.core.manifest import Manifest
from swarmget.db import create_db_engine

metadata = sa.MetaData()
entries = sa.Table(
    "relay_entries",
    metadata,
    sa.Column("url", sa.String(8192), primary_key=True),
    sa.Column("final_url", sa.String(8192), nullable=False),
    sa.Column("etag", sa.String(1024)),
    sa.Column("last_modified", sa.String(128)),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("piece_size", sa.Integer, nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("last_used", sa.Float, nullable=False),
)
fetches = sa.Table(
    "relay_fetches",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("url", sa.String(8192), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("hit", sa.Boolean, nullable=False),
    sa.Column("sha256", sa.String(64)),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.String(4096)),
    sa.Column("finished", sa.Float, nullable=False, index=True),
)


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    url: str
    final_url: str
    etag: str | None
    last_modified: str | None
    manifest: Manifest
    created: float
    last_used: float

    @property
    def sha256(self) -> str:
        return self.manifest.sha256

    @property
    def size(self) -> int:
        return self.manifest.size


@dataclass(frozen=True, kw_only=True)
class BlobUse:
    """One blob as eviction sees it: its size and when any URL of it was last used."""

    sha256: str
    size: int
    last_used: float


@dataclass(frozen=True, kw_only=True)
class FetchRecord:
    """The outcome of one finished fetch: ``ready`` (its blob is ``sha256``) or ``failed``
    (with the error's code and message)."""

    id: str
    url: str
    state: FetchPhase
    hit: bool
    sha256: str | None
    error_code: str | None
    error_message: str | None
    finished: float


def _entry(row: sa.Row[tuple[object, ...]]) -> CacheEntry:
    m = row._mapping
    return CacheEntry(
        url=str(m["url"]),
        final_url=str(m["final_url"]),
        etag=None if m["etag"] is None else str(m["etag"]),
        last_modified=None if m["last_modified"] is None else str(m["last_modified"]),
        manifest=Manifest.from_json(json.loads(str(m["manifest"]))),
        created=float(str(m["created"])),
        last_used=float(str(m["last_used"])),
    )


class CacheIndex:
    def __init__(self, url: str) -> None:
        self._engine = create_db_engine(url)

    async def start(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        await self._engine.dispose()

    async def get(self, url: str) -> CacheEntry | None:
        rows = await self._query(sa.select(entries).where(entries.c.url == url))
        return _entry(rows[0]) if rows else None

    async def by_sha256(self, sha256: str) -> list[CacheEntry]:
        return [
            _entry(r) for r in await self._query(entries.select().where(entries.c.sha256 == sha256))
        ]

    async def all(self) -> list[CacheEntry]:
        return [_entry(r) for r in await self._query(entries.select())]

    async def blobs(self) -> list[BlobUse]:
        """Every blob once (several URLs may share one), without reading manifests."""
        stmt = sa.select(
            entries.c.sha256,
            sa.func.max(entries.c.size).label("size"),
            sa.func.max(entries.c.last_used).label("last_used"),
        ).group_by(entries.c.sha256)
        return [
            BlobUse(
                sha256=str(m["sha256"]),
                size=int(str(m["size"])),
                last_used=float(str(m["last_used"])),
            )
            for m in (row._mapping for row in await self._query(stmt))
        ]

    async def put(self, entry: CacheEntry) -> None:
        values = {
            "url": entry.url,
            "final_url": entry.final_url,
            "etag": entry.etag,
            "last_modified": entry.last_modified,
            "size": entry.size,
            "sha256": entry.sha256,
            "piece_size": entry.manifest.piece_size,
            "manifest": json.dumps(entry.manifest.to_json()),
            "created": entry.created,
            "last_used": entry.last_used,
        }
        async with self._begin() as conn:
            await conn.execute(entries.delete().where(entries.c.url == entry.url))
            await conn.execute(entries.insert().values(**values))

    async def touch(self, url: str, now: float) -> None:
        async with self._begin() as conn:
            await conn.execute(entries.update().where(entries.c.url == url).values(last_used=now))

    async def remove_blob(self, sha256: str) -> None:
        async with self._begin() as conn:
            await conn.execute(entries.delete().where(entries.c.sha256 == sha256))

    async def record_fetch(self, record: FetchRecord, *, forget_before: float) -> None:
        """Keep ``record``; forget records of fetches finished before ``forget_before``."""
        async with self._begin() as conn:
            await conn.execute(fetches.delete().where(fetches.c.finished < forget_before))
            row = dataclasses.asdict(record) | {"state": record.state.value}
            await conn.execute(fetches.insert().values(**row))

    async def fetch_record(self, fetch_id: str) -> FetchRecord | None:
        rows = await self._query(sa.select(fetches).where(fetches.c.id == fetch_id))
        if not rows:
            return None
        m = rows[0]._mapping
        state = parse_phase(m["state"])
        if state is None:  # not a state we write: as good as forgotten
            return None
        return FetchRecord(
            id=str(m["id"]),
            url=str(m["url"]),
            state=state,
            hit=bool(m["hit"]),
            sha256=None if m["sha256"] is None else str(m["sha256"]),
            error_code=None if m["error_code"] is None else str(m["error_code"]),
            error_message=None if m["error_message"] is None else str(m["error_message"]),
            finished=float(str(m["finished"])),
        )

    async def _query(
        self, stmt: sa.Select[tuple[object, ...]] | sa.Executable
    ) -> list[sa.Row[tuple[object, ...]]]:
        try:
            async with self._engine.connect() as conn:
                result = await conn.execute(stmt)
                return list(result.fetchall())
        except SQLAlchemyError as exc:
            raise StorageError(f"relay index: {exc}") from exc

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StorageError(f"relay index: {exc}") from exc


@asynccontextmanager
async def open_cache_index(url: str) -> AsyncIterator[CacheIndex]:
    index = CacheIndex(url)
    try:
        await index.start()
        yield index
    finally:
        await index.close()
