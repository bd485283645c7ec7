"""Hybrid retrieval: pgvector nearest neighbours and PostgreSQL full-text search, fused into
one score, each passage with a citation.

Vectors find paraphrases; full text finds exact words that embeddings blur: product codes,
error numbers, names. A chunk's similarity to the question is the mean of its own cosine and
its closest piece's (a sentence, list item or table row with its heading, embedded at
ingest): "How big is it?" is near "Size: 38 x 16 x 42 cm", less so the six specifications
around it. The full-text list is ranked by BM25: a word of the question counts by
how rare it is among the collection's chunks, once in the heading (twice the weight) and
once in the body, less in a longer chunk. The two lists are fused by their scores, not their
ranks: cosine similarity plus `text_weight` times the BM25 score as a share of the best a
chunk could get for that question, a weight per embedder (a model's cosines say more than a
bag of words'). Identifiers of the question (words with a digit, like `TL-4471`) count once
more: chunks holding all of them come first in the full-text list and gain a full text
score in the fusion. Ties go to the nearer vector."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg

from .documents import Collection
from .embedder import Embedder, default_embedder
from .vectors import to_param

__all__ = [
    "TEXT_WEIGHTS",
    "Citation",
    "Passage",
    "Retriever",
    "SearchMode",
    "format_context",
]

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
    score: float  # similarity + text_weight × text score (or the single mode's)
    vector_rank: int | None
    text_rank: int | None
    citation: Citation
    content_hash: str  # of the document it came from, as retrieved
    closest_piece: float | None = None  # cosine of the question and the closest piece

    @property
    def document_id(self) -> int:
        return self.citation.document_id


# BM25 with its usual constants, k1 = 1.2 (how fast a word's evidence saturates) and b = 0.75
# (how much a longer chunk is discounted, against the average of the chunks that match); a
# word counts 2 in the heading (weight A) and 1 in the body (B), however often it recurs.
_SEARCH = """
WITH q AS (
    SELECT array_agg(l) AS words,
           CASE WHEN count(*) = 0 THEN NULL ELSE
               array_to_string(array_agg(quote_literal(l)), ' | ')::tsquery END AS any_word,
           tsvector_to_array(to_tsvector('english', $7)) AS ids
      FROM unnest(tsvector_to_array(to_tsvector('english', $3))) l
), near AS (
    -- the chunks nearest the question, by their own vector or by one of their pieces'
    SELECT id FROM (SELECT id FROM threadline.rag_chunks
                     WHERE collection_id = ANY($1::bigint[]) AND $5
                     ORDER BY embedding <=> $2::real[]::vector LIMIT $4) by_chunk
    UNION
    SELECT chunk_id FROM (SELECT chunk_id FROM threadline.rag_pieces
                           WHERE collection_id = ANY($1::bigint[]) AND $5
                           ORDER BY embedding <=> $2::real[]::vector LIMIT $4) by_piece
), v AS (
    SELECT id, row_number() OVER (ORDER BY similarity DESC, id) AS r
      FROM near JOIN threadline.rag_chunks c USING (id), LATERAL (
           SELECT (2 - (c.embedding <=> $2::real[]::vector)
                   - COALESCE(min(p.embedding <=> $2::real[]::vector),
                              c.embedding <=> $2::real[]::vector)) / 2 AS similarity
             FROM threadline.rag_pieces p WHERE p.chunk_id = c.id) s
     ORDER BY r LIMIT $4
), m AS MATERIALIZED (
    -- each chunk holding a word of the question, with a copy of its tsvector (all of it:
    -- headings are A, bodies B), so that the stored one is read and decompressed once
    SELECT c.id, ts_filter(c.tsv, '{a,b}') AS tsv
      FROM threadline.rag_chunks c, q
     WHERE $6 AND c.collection_id = ANY($1::bigint[]) AND c.tsv @@ q.any_word
), h AS (
    SELECT m.id, length(m.tsv)::float8 AS terms, word,
           2 * (m.tsv @@ (quote_literal(word) || ':A')::tsquery)::int
           + (m.tsv @@ (quote_literal(word) || ':B')::tsquery)::int AS tf
      FROM m, q, unnest(q.words) word
     WHERE m.tsv @@ quote_literal(word)::tsquery
), w AS (
    SELECT word, ln(1 + (n.chunks - count(*) + 0.5) / (count(*) + 0.5)) AS idf
      FROM h, (SELECT count(*)::float8 AS chunks FROM threadline.rag_chunks
                WHERE collection_id = ANY($1::bigint[])) n
     GROUP BY word, n.chunks
), t AS (
    SELECT id, bm25, has_ids, row_number() OVER (ORDER BY has_ids DESC, bm25 DESC, id) AS r
      FROM (SELECT h.id,
                   sum(w.idf * h.tf * 2.2 / (h.tf + 1.2 * (0.25 + 0.75 * h.terms / a.terms)))
                   / (2.2 * (SELECT sum(idf) FROM w)) AS bm25,
                   cardinality(q.ids) > 0 AND q.ids <@ array_agg(h.word) AS has_ids
              FROM h JOIN w USING (word), q,
                   (SELECT avg(terms) AS terms FROM (SELECT DISTINCT id, terms FROM h) matched) a
             GROUP BY h.id, q.ids) scored
     ORDER BY r LIMIT $4
)
SELECT c.id, c.content, c.heading, c.page, d.id AS document_id, d.source, d.title,
       d.content_hash, v.r AS vector_rank, t.r AS text_rank, p.piece AS closest_piece,
       CASE WHEN $5 THEN (1 - (c.embedding <=> $2::real[]::vector) + COALESCE(p.piece,
                          1 - (c.embedding <=> $2::real[]::vector))) / 2 ELSE 0 END
       + CASE WHEN $5 THEN $8::float8 ELSE 1 END * COALESCE(t.bm25 + t.has_ids::int, 0) AS score
  FROM v FULL JOIN t USING (id)
  JOIN threadline.rag_chunks c ON c.id = COALESCE(v.id, t.id)
  JOIN threadline.rag_documents d ON d.id = c.document_id
  LEFT JOIN LATERAL (
       SELECT max(1 - (p.embedding <=> $2::real[]::vector)) AS piece
         FROM threadline.rag_pieces p WHERE $5 AND p.chunk_id = c.id) p ON true
 ORDER BY score DESC, v.r NULLS LAST, t.r NULLS LAST, c.id
 LIMIT $9
"""

# How much the full-text score (a share, 0 to 1, of the best a chunk could get for the
# question) counts beside the cosine, per embedder: fitted by `benchmarks/retrieval.py` on the
# calibration half of the support bot's questions (it says whether these are still what it
# fits). The hash embedder's cosines know no meaning: there the words mostly decide.
TEXT_WEIGHTS = {"all-MiniLM-L6-v2": 0.2, "hash-bow-384": 3.0}
DEFAULT_TEXT_WEIGHT = TEXT_WEIGHTS["all-MiniLM-L6-v2"]  # another model: a guess, recalibrate


class Retriever:
    """Searches collections; `k` passages come back, best first."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        embedder: Embedder | None = None,
        *,
        candidates: int = 40,
        text_weight: float | None = None,
    ) -> None:
        self.pool = pool
        self.embedder = embedder or default_embedder()
        self.candidates = candidates  # per ranking, before fusion
        self.text_weight = (
            TEXT_WEIGHTS.get(self.embedder.name, DEFAULT_TEXT_WEIGHT)
            if text_weight is None
            else text_weight
        )

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
                self.text_weight,
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
        None if row["closest_piece"] is None else float(row["closest_piece"]),
    )


def format_context(passages: Sequence[Passage]) -> str:
    """Passages as a prompt's context block: `[n] label` then the text, for citing by number."""
    lines = ["Context:"]
    for number, passage in enumerate(passages, 1):
        lines.append(f"[{number}] {passage.citation.label}\n{passage.content}\n")
    return "\n".join(lines)
