"""Hybrid retrieval: pgvector nearest neighbours and PostgreSQL full-text search, fused by
reciprocal rank (RRF), each passage with a citation.

Vectors find paraphrases; full text finds exact words that embeddings blur: product codes,
error numbers, names. Identifiers in the question (words with a digit, like `TL-4471`) are
matched exactly: passages holding all of them rank first among the full-text results and
count once more in the fusion, as a third ranking."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg

from .documents import Collection
from .embedder import Embedder, default_embedder
from .vectors import to_param

__all__ = ["Citation", "Passage", "Retriever", "SearchMode", "format_context"]

SearchMode = Literal["hybrid", "vector", "text"]
_WORD = re.compile(r"\w+(?:[-./]\w+)*")


@dataclass(frozen=True)
class Citation:
    document_id: int
    source: str
    title: str
    heading: str
    page: int | None

    @property
    def label(self) -> str:
        where = self.heading or self.title or self.source
        return f"{where} (p. {self.page})" if self.page else where


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    content: str
    score: float  # fused RRF score (or the single mode's)
    vector_rank: int | None
    text_rank: int | None
    citation: Citation
    content_hash: str  # of the document it came from, as retrieved

    @property
    def document_id(self) -> int:
        return self.citation.document_id


_SEARCH = """
WITH v AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS r FROM (
        SELECT id, embedding <=> $2::real[]::vector AS distance FROM threadline.rag_chunks
         WHERE collection_id = ANY($1::bigint[]) AND $5
         ORDER BY embedding <=> $2::real[]::vector LIMIT $4) nearest
), q AS (
    SELECT CASE WHEN count(*) = 0 THEN NULL ELSE
               array_to_string(array_agg(quote_literal(l)), ' | ')::tsquery END AS any_word,
           CASE WHEN $7 = '' THEN NULL ELSE plainto_tsquery('english', $7) END AS ids
      FROM unnest(tsvector_to_array(to_tsvector('english', $3))) l
), t AS (
    SELECT id, row_number() OVER (
               ORDER BY COALESCE(tsv @@ q.ids, false) DESC, ts_rank_cd(tsv, q.any_word, 1) DESC
           ) AS r
      FROM threadline.rag_chunks, q
     WHERE $6 AND collection_id = ANY($1::bigint[]) AND tsv @@ q.any_word
     ORDER BY r LIMIT $4
), x AS (
    SELECT id, r FROM t, q WHERE q.ids IS NOT NULL
       AND (SELECT tsv @@ q.ids FROM threadline.rag_chunks c WHERE c.id = t.id)
)
SELECT c.id, c.content, c.heading, c.page, d.id AS document_id, d.source, d.title,
       d.content_hash, v.r AS vector_rank, t.r AS text_rank,
       COALESCE(1.0 / ($8 + v.r), 0) + COALESCE(1.0 / ($8 + t.r), 0)
       + COALESCE(1.0 / ($8 + x.r), 0) AS score
  FROM v FULL JOIN t USING (id) LEFT JOIN x USING (id)
  JOIN threadline.rag_chunks c ON c.id = COALESCE(v.id, t.id)
  JOIN threadline.rag_documents d ON d.id = c.document_id
 ORDER BY score DESC, c.id
 LIMIT $9
"""


class Retriever:
    """Searches collections; `k` passages come back, best first."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        embedder: Embedder | None = None,
        *,
        candidates: int = 40,
        rrf_k: int = 60,
    ) -> None:
        self.pool = pool
        self.embedder = embedder or default_embedder()
        self.candidates = candidates  # per ranking, before fusion
        self.rrf_k = rrf_k

    async def search(
        self,
        query: str,
        collections: Collection | Sequence[Collection],
        *,
        k: int = 5,
        mode: SearchMode = "hybrid",
    ) -> list[Passage]:
        targets = [collections] if isinstance(collections, Collection) else list(collections)
        if not targets or not query.strip():
            return []
        vector = to_param(await self.embedder.embed_one(query))
        identifiers = " ".join(w for w in _WORD.findall(query) if any(c.isdigit() for c in w))
        async with self.pool.acquire() as conn, conn.transaction():
            # Filtered HNSW scans keep going until enough rows pass the filter (pgvector 0.8).
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = await conn.fetch(
                _SEARCH,
                [c.id for c in targets],
                vector,
                query,
                max(self.candidates, k),
                mode != "text",
                mode != "vector",
                identifiers,
                self.rrf_k,
                k,
            )
        return [_passage(r) for r in rows]


def _passage(row: asyncpg.Record) -> Passage:
    citation = Citation(
        row["document_id"], row["source"], row["title"], row["heading"], row["page"]
    )
    return Passage(
        row["id"],
        row["content"],
        float(row["score"]),
        row["vector_rank"],
        row["text_rank"],
        citation,
        row["content_hash"],
    )


def format_context(passages: Sequence[Passage]) -> str:
    """Passages as a prompt's context block: `[n] label` then the text, for citing by number."""
    lines = ["Context:"]
    for number, passage in enumerate(passages, 1):
        lines.append(f"[{number}] {passage.citation.label}\n{passage.content}\n")
    return "\n".join(lines)
