"""The SQL of the semantic cache: one class that talks to `threadline.cache_entries`."""

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

from ...engine.engine import Engine, engine_of
from ..vectors import to_param
from .scope import CacheScope
from .verifier import Candidate

__all__ = ["CachedAnswer", "DocumentVersion", "Entries", "EntryInfo"]

log = logging.getLogger(__name__)

HIT_WRITE_DELAY_S = 0.1
_LIVE = "(expires_at IS NULL OR expires_at > now())"


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


_ANSWER_COLUMNS = "id, prompt, answer, provider, model, input_tokens, output_tokens, cost_usd"


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
            row = await conn.fetchrow(
                f"SELECT {_ANSWER_COLUMNS} FROM threadline.cache_entries "
                f"WHERE scope_key = $1 AND prompt_hash = $2 AND {_LIVE}",
                scope_key,
                prompt_hash,
            )
        return None if row is None else _answer(row)

    async def nearest(
        self, scope_key: str, vector: Any, k: int, min_cosine: float
    ) -> list[tuple[Candidate, CachedAnswer]]:
        """Up to k live entries of the scope nearest to the vector, at least `min_cosine`,
        with their answers (one round trip)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM threadline.cache_nearest($1, $2::real[]::halfvec, $3, $4)",
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
                "SELECT * FROM threadline.cache_lookup($1, $2, $3::real[]::halfvec, $4, $5)",
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
            row = await conn.fetchrow(
                f"SELECT {_ANSWER_COLUMNS} FROM threadline.cache_entries WHERE id = $1 AND {_LIVE}",
                entry_id,
            )
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
                            _COUNT_HITS,
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
                _PUT,
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
            await conn.execute(
                "UPDATE threadline.cache_entries SET sources = $2::jsonb WHERE id = $1",
                entry_id,
                json.dumps(list(sources)),
            )
            await conn.execute(
                "DELETE FROM threadline.cache_entry_documents WHERE entry_id = $1", entry_id
            )
            await conn.executemany(
                "INSERT INTO threadline.cache_entry_documents VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                [(entry_id, d.document_id, d.content_hash) for d in documents],
            )
        return entry_id

    async def sources(self, entry_id: int) -> list[dict[str, Any]]:
        """What the entry's answer cites ([] for none, or an entry that is gone)."""
        async with self.pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT sources::text FROM threadline.cache_entries WHERE id = $1", entry_id
            )
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
                _PUT,
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

    async def list(self, where: str, args: Sequence[Any], limit: int) -> list[EntryInfo]:
        await self.flush()  # what is inspected includes the hits counted so far
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT e.*, coalesce(h.hits, 0) AS hits, coalesce(h.saved_usd, 0) AS saved_usd, "
                "       ARRAY(SELECT document_id FROM threadline.cache_entry_documents d "
                "             WHERE d.entry_id = e.id ORDER BY 1) AS documents "
                "FROM threadline.cache_entries e "
                "LEFT JOIN threadline.cache_hits h ON h.entry_id = e.id "
                f"WHERE {where} ORDER BY e.id DESC LIMIT ${len(args) + 1}",
                *args,
                limit,
            )
        return [_info(r) for r in rows]

    async def delete(self, where: str, args: Sequence[Any]) -> int:
        await self.flush()
        async with self.pool.acquire() as conn:
            status: str = await conn.execute(
                f"DELETE FROM threadline.cache_entries e WHERE {where}", *args
            )
        return int(status.split()[-1])


# Entries deleted since their hits were counted are skipped (their counters went with them).
_COUNT_HITS = """
INSERT INTO threadline.cache_hits AS h (entry_id, hits, saved_usd, last_hit_at)
SELECT c.id, c.n, c.saved, now()
FROM unnest($1::bigint[], $2::bigint[], $3::numeric[]) AS c(id, n, saved)
WHERE EXISTS (SELECT 1 FROM threadline.cache_entries e WHERE e.id = c.id)
ORDER BY c.id
ON CONFLICT (entry_id) DO UPDATE
   SET hits = h.hits + EXCLUDED.hits, saved_usd = h.saved_usd + EXCLUDED.saved_usd,
       last_hit_at = EXCLUDED.last_hit_at
"""

_PUT = """
INSERT INTO threadline.cache_entries
    (scope_key, scope, prompt, prompt_hash, embedding, answer, provider, model,
     input_tokens, output_tokens, cost_usd, expires_at)
VALUES ($1, $2::jsonb, $3, $4, $5::real[]::halfvec, $6, $7, $8, $9, $10, $11, now() + $12::interval)
ON CONFLICT (scope_key, prompt_hash) DO UPDATE
   SET prompt = EXCLUDED.prompt, embedding = EXCLUDED.embedding, answer = EXCLUDED.answer,
       provider = EXCLUDED.provider, model = EXCLUDED.model,
       input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens,
       cost_usd = EXCLUDED.cost_usd, created_at = now(), expires_at = EXCLUDED.expires_at
RETURNING id
"""


async def _documents_unchanged(
    conn: asyncpg.pool.PoolConnectionProxy, documents: Sequence[DocumentVersion]
) -> bool:
    # FOR SHARE: a concurrent change of these documents waits for this transaction, and
    # its trigger then drops the entry written here.
    rows = await conn.fetch(
        "SELECT id, content_hash FROM threadline.rag_documents WHERE id = ANY($1::bigint[]) "
        "FOR SHARE",
        [d.document_id for d in documents],
    )
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
