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

from ..db.sqlfiles import named_statements
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
_SQL = named_statements("threadline.rag", "queries.sql")  # the package's SQL


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
            await conn.execute(_SQL["iterative_scan"])
            rows = await conn.fetch(
                _SQL["search"],
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
