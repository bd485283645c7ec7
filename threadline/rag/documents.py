"""Collections of documents per tenant: ingest (upsert by content hash), list, delete.

Changing or deleting a document drops the cached answers built from it (a trigger in
migrations/0004_rag.sql does it in the same transaction, whoever changes the row)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg

from ..db.sqlfiles import named_statements
from ..errors import ConfigurationError
from .chunking import Chunk, chunk_sections
from .embedder import Embedder, default_embedder
from .loaders import LoadedDocument, kind_of, load_path
from .vectors import content_hash, to_param

__all__ = ["Collection", "DocumentInfo", "DocumentStore", "IngestResult"]

IngestStatus = Literal["added", "updated", "unchanged"]
_SQL = named_statements("threadline.rag", "queries.sql")  # the package's SQL


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    tenant: str | None
    embedder: str


@dataclass(frozen=True)
class IngestResult:
    document_id: int
    source: str
    status: IngestStatus
    chunks: int


@dataclass(frozen=True)
class DocumentInfo:
    id: int
    source: str
    title: str
    kind: str
    content_hash: str
    version: int
    chunks: int
    metadata: dict[str, Any]


class DocumentStore:
    """Documents, chunked and embedded, on a pool of the threadline database."""

    def __init__(
        self, pool: asyncpg.Pool, embedder: Embedder | None = None, *, max_chars: int = 1200
    ) -> None:
        self.pool = pool
        self.embedder = embedder or default_embedder()
        self.max_chars = max_chars

    async def collection(self, name: str, *, tenant: str | None = None) -> Collection:
        """The tenant's collection `name`, created on first use. Its vectors come from one
        embedder: opening it with another is refused (their vectors do not compare)."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                _SQL["open_collection"], tenant or "", name, self.embedder.name
            )
        assert row is not None
        if row["embedder"] != self.embedder.name:
            raise ConfigurationError(
                f"collection {name!r} holds {row['embedder']} vectors; "
                f"this store embeds with {self.embedder.name}"
            )
        return Collection(row["id"], name, tenant, row["embedder"])

    async def collections(self, *, tenant: str | None = None) -> list[Collection]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_SQL["collections"], tenant or "")
        return [Collection(r["id"], r["name"], r["tenant"] or None, r["embedder"]) for r in rows]

    async def drop_collection(self, collection: Collection) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(_SQL["drop_collection"], collection.id)

    # -- ingest -------------------------------------------------------------------------------

    async def ingest(
        self,
        collection: Collection,
        document: LoadedDocument | str | Path,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> IngestResult:
        """Add or replace one document (keyed by its source). Unchanged text is a no-op:
        nothing is re-embedded and no cached answer is dropped."""
        doc = document if isinstance(document, LoadedDocument) else load_path(document)
        digest = content_hash(doc.text)
        async with self.pool.acquire() as conn:
            existing = await conn.fetchrow(_SQL["document_version"], collection.id, doc.source)
        if existing is not None and existing["content_hash"] == digest and existing["has_pieces"]:
            return IngestResult(existing["id"], doc.source, "unchanged", 0)
        chunks = chunk_sections(doc.sections, max_chars=self.max_chars)
        texts = [c.embedding_text for c in chunks]
        counts = [len(c.pieces) for c in chunks]
        vectors = await self.embedder.embed(texts + [p for c in chunks for p in c.pieces])
        meta = {"kind": doc.kind, **(metadata or {})}
        document_id = await self._write(collection, doc, digest, meta, chunks, vectors, counts)
        status: IngestStatus = "added" if existing is None else "updated"
        return IngestResult(document_id, doc.source, status, len(chunks))

    async def _write(
        self,
        collection: Collection,
        doc: LoadedDocument,
        digest: str,
        metadata: Mapping[str, Any],
        chunks: list[Chunk],
        vectors: Any,
        counts: list[int],
    ) -> int:
        """The document's row, its chunks (the first `len(chunks)` vectors) and each chunk's
        pieces (the rest, `counts[i]` for chunk i), replacing what was there."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _SQL["upsert_document"],
                collection.id,
                doc.source,
                doc.title,
                doc.kind,
                digest,
                json.dumps(dict(metadata)),
            )
            assert row is not None
            document_id: int = row["id"]
            await conn.execute(_SQL["delete_chunks"], document_id)
            pieces = iter(vectors[len(chunks) :])
            rows: list[tuple[int, int, list[float]]] = []
            for chunk, vector, count in zip(chunks, vectors[: len(chunks)], counts, strict=True):
                chunk_id = await conn.fetchval(
                    _SQL["insert_chunk"],
                    document_id,
                    collection.id,
                    chunk.ordinal,
                    chunk.heading,
                    chunk.content,
                    chunk.page,
                    to_param(vector),
                )
                rows += [(chunk_id, collection.id, to_param(next(pieces))) for _ in range(count)]
            await conn.executemany(_SQL["insert_piece"], rows)
        return document_id

    async def ingest_path(
        self,
        collection: Collection,
        path: str | Path,
        *,
        metadata: Mapping[str, Any] | None = None,
        on_progress: Callable[[IngestResult], None] | None = None,
    ) -> list[IngestResult]:
        """Ingest a file, or every supported file under a folder (sources are paths
        relative to that folder, so a moved folder keeps its documents' identities)."""
        results = []
        for file, source in files_under(path):
            doc = load_path(file, source=source)
            result = await self.ingest(collection, doc, metadata=metadata)
            results.append(result)
            if on_progress is not None:
                on_progress(result)
        return results

    # -- read and delete ----------------------------------------------------------------------

    async def documents(self, collection: Collection) -> list[DocumentInfo]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_SQL["documents"], collection.id)
        return [_info(r) for r in rows]

    async def delete(self, collection: Collection, source: str) -> bool:
        """Delete a document, its chunks and the cached answers built from it."""
        async with self.pool.acquire() as conn:
            deleted = await conn.fetchval(_SQL["delete_document"], collection.id, source)
        return deleted is not None


def files_under(path: str | Path) -> Iterable[tuple[Path, str]]:
    """(file, source) for a supported file, or for each supported file under a folder."""
    path = Path(path)
    if path.is_file():
        return [(path, path.name)]
    if not path.is_dir():
        raise ConfigurationError(f"no such file or folder: {path}")
    return [
        (f, f.relative_to(path).as_posix())
        for f in sorted(path.rglob("*"))
        if f.is_file() and kind_of(f) is not None
    ]


def _info(row: asyncpg.Record) -> DocumentInfo:
    return DocumentInfo(
        row["id"],
        row["source"],
        row["title"],
        row["kind"],
        row["content_hash"],
        row["version"],
        row["chunks"],
        json.loads(row["metadata"]),
    )
