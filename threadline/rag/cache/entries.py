"""The semantic cache's store: one class that talks to `threadline.cache_entries` (its
statements are in `threadline/rag/queries.sql`)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from ...db.sqlfiles import named_statements
from ...engine.engine import Engine, engine_of
from ..vectors import to_param
from .scope import CacheScope
from .verifier import Candidate

__all__ = ["CachedAnswer", "DocumentVersion", "Entries", "EntryFilter", "EntryInfo"]

log = logging.getLogger(__name__)

HIT_WRITE_DELAY_S = 0.1
_SQL = named_statements("threadline.rag", "queries.sql")  # the package's SQL


@dataclass(frozen=True)
class DocumentVersion:
    """A document an answer was built from, as it was then."""

    document_id: int
    content_hash: str


@dataclass(frozen=True)
class CachedAnswer:
    entry_id: int
    prompt: str
    answer: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True)
class EntryInfo:
    id: int
    scope: CacheScope
    prompt: str
    answer: str
    model: str
    cost_usd: Decimal
    hits: int
    saved_usd: Decimal
    created_at: datetime
    expires_at: datetime | None
    documents: list[int]


@dataclass(frozen=True)
class EntryFilter:
    """Which entries an admin call is about: those matching every field given (None: any)."""

    scope_key: str | None = None
    tenant: str | None = None
    agent: str | None = None
    entry_id: int | None = None
    expired_only: bool = False

    def args(self) -> tuple[object, ...]:
        """The parameters `list_entries` and `delete_entries` take it as."""
        return (self.scope_key, self.tenant, self.agent, self.entry_id, self.expired_only)


def _answer(row: asyncpg.Record) -> CachedAnswer:
    return CachedAnswer(
        row["id"],
        row["prompt"],
        row["answer"],
        row["provider"],
        row["model"],
        row["input_tokens"],
        row["output_tokens"],
        row["cost_usd"],
    )


def _candidates(rows: list[asyncpg.Record]) -> list[tuple[Candidate, CachedAnswer]]:
    return [(Candidate(r["id"], r["prompt"], float(r["cosine"])), _answer(r)) for r in rows]


class Entries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._hits: dict[int, list[Any]] = {}
        self._hit_writer: asyncio.Task[None] | None = None
        self._flushed_by: Engine | None = None

    async def exact(self, scope_key: str, prompt_hash: str) -> CachedAnswer | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_SQL["exact_entry"], scope_key, prompt_hash)
        return None if row is None else _answer(row)

    async def nearest(
        self, scope_key: str, vector: Any, k: int, min_cosine: float
    ) -> list[tuple[Candidate, CachedAnswer]]:
        """Up to k live entries of the scope nearest to the vector, at least `min_cosine`,
        with their answers (one round trip)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                _SQL["nearest_entries"],
                scope_key,
                to_param(vector),
                k,
                min_cosine,
            )
        return _candidates(rows)

    async def lookup(
        self, scope_key: str, prompt_hash: str, vector: Any, k: int, min_cosine: float
    ) -> tuple[CachedAnswer | None, list[tuple[Candidate, CachedAnswer]]]:
        """`exact`, else `nearest`, in one round trip (for a vector that cost nothing to
        make before knowing whether the exact match hits)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                _SQL["lookup_entries"],
                scope_key,
                prompt_hash,
                to_param(vector),
                k,
                min_cosine,
            )
        if rows and rows[0]["exact"]:
            return _answer(rows[0]), []
        return None, _candidates(rows)

    async def answer(self, entry_id: int) -> CachedAnswer | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_SQL["entry_answer"], entry_id)
        return None if row is None else _answer(row)

    def count_hit(self, entry_id: int, saved: Decimal) -> None:
        """Add a hit to the entry's counters, off the caller's path (written in the
        background, batched; `flush` waits for it). The ledger is the record of savings;
        these counters are for inspecting the cache."""
        count = self._hits.setdefault(entry_id, [0, Decimal(0)])
        count[0] += 1
        count[1] += saved
        if self._hit_writer is None:
            self._hit_writer = asyncio.get_running_loop().create_task(self._write_hits())
            engine = engine_of(self.pool)
            if engine is not None and engine is not self._flushed_by:
                self._flushed_by = engine  # the last counts are written before its pool closes
                engine.before_close(self.flush)

    async def flush(self) -> None:
        while self._hit_writer is not None:
            await asyncio.wait([self._hit_writer])

    async def _write_hits(self) -> None:
        try:
            while self._hits:
                # Gather the hits of a moment into one commit: a busy cache would otherwise
                # commit (and fsync) once per hit, beside the lookups it should not slow.
                await asyncio.sleep(HIT_WRITE_DELAY_S)
                batch, self._hits = self._hits, {}
                ids = sorted(batch)  # one order for every writer: no deadlock between them
                try:
                    async with self.pool.acquire() as conn:
                        await conn.execute(
                            _SQL["count_hits"],
                            ids,
                            [batch[i][0] for i in ids],
                            [batch[i][1] for i in ids],
                        )
                except Exception as exc:  # counters only: never fail a lookup for them
                    log.warning("could not count %d cache hits: %s", len(batch), exc)
        finally:
            self._hit_writer = None

    async def put(
        self,
        scope: CacheScope,
        prompt: str,
        prompt_hash: str,
        vector: Any,
        answer: CachedAnswer,
        ttl: timedelta | None,
        documents: Sequence[DocumentVersion],
        sources: Sequence[dict[str, Any]] = (),
    ) -> int | None:
        """Insert or replace the scope's entry for this prompt; None (nothing stored) if a
        document the answer used has changed or gone since it was read. `sources`: what
        its `[n]` markers cite (see `agents.turn.source_of`)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if documents and not await _documents_unchanged(conn, documents):
                return None
            entry_id: int = await conn.fetchval(
                _SQL["put_entry"],
                scope.key,
                json.dumps(scope.to_json()),
                prompt,
                prompt_hash,
                to_param(vector),
                answer.answer,
                answer.provider,
                answer.model,
                answer.input_tokens,
                answer.output_tokens,
                answer.cost_usd,
                ttl,
            )
            await conn.execute(_SQL["set_entry_sources"], entry_id, json.dumps(list(sources)))
            await conn.execute(_SQL["forget_entry_documents"], entry_id)
            await conn.executemany(
                _SQL["add_entry_document"],
                [(entry_id, d.document_id, d.content_hash) for d in documents],
            )
        return entry_id

    async def sources(self, entry_id: int) -> list[dict[str, Any]]:
        """What the entry's answer cites ([] for none, or an entry that is gone)."""
        async with self.pool.acquire() as conn:
            found = await conn.fetchval(_SQL["entry_sources"], entry_id)
        return list(json.loads(found)) if found else []

    async def put_many(
        self,
        scope: CacheScope,
        rows: Sequence[tuple[str, str, Any, CachedAnswer]],
        ttl: timedelta | None,
    ) -> None:
        """Insert or replace many entries of one scope (prompt, hash, vector, answer) that
        depend on no document: warming a cache from a FAQ or a log."""
        scope_json = json.dumps(scope.to_json())
        async with self.pool.acquire() as conn:
            await conn.executemany(
                _SQL["put_entry"],
                [
                    (
                        scope.key,
                        scope_json,
                        prompt,
                        prompt_hash,
                        to_param(vector),
                        a.answer,
                        a.provider,
                        a.model,
                        a.input_tokens,
                        a.output_tokens,
                        a.cost_usd,
                        ttl,
                    )
                    for prompt, prompt_hash, vector, a in rows
                ],
            )

    async def list(self, which: EntryFilter, limit: int) -> list[EntryInfo]:
        await self.flush()  # what is inspected includes the hits counted so far
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_SQL["list_entries"], *which.args(), limit)
        return [_info(r) for r in rows]

    async def delete(self, which: EntryFilter) -> int:
        await self.flush()
        async with self.pool.acquire() as conn:
            status: str = await conn.execute(_SQL["delete_entries"], *which.args())
        return int(status.split()[-1])


async def _documents_unchanged(
    conn: asyncpg.pool.PoolConnectionProxy, documents: Sequence[DocumentVersion]
) -> bool:
    # Locked: a concurrent change of these documents waits for this transaction, and its
    # trigger then drops the entry written here.
    rows = await conn.fetch(_SQL["lock_documents"], [d.document_id for d in documents])
    current = {r["id"]: r["content_hash"] for r in rows}
    return all(current.get(d.document_id) == d.content_hash for d in documents)


def _info(row: asyncpg.Record) -> EntryInfo:
    return EntryInfo(
        row["id"],
        CacheScope.from_json(json.loads(row["scope"])),
        row["prompt"],
        row["answer"],
        f"{row['provider']}:{row['model']}" if row["provider"] else row["model"],
        row["cost_usd"],
        row["hits"],
        row["saved_usd"],
        row["created_at"],
        row["expires_at"],
        list(row["documents"]),
    )
