"""Retrieval and the semantic cache on pgvector.

    store = DocumentStore(pool)                      # MiniLM embeddings, loaded on first use
    kb = await store.collection("help", tenant="acme")
    await store.ingest_path(kb, "docs/")             # Markdown, text, HTML, PDF
    passages = await Retriever(pool).search("error E7", kb)   # hybrid, with citations

    cache = SemanticCache(pool, false_hit_rate=0.05)
    hit = await cache.lookup(question, CacheScope(agent="support", prompt_version="3"))

The sentence-transformers model and torch are imported only when something is embedded.
"""

from .cache import (
    CacheDecision,
    CachedModel,
    CacheHit,
    CacheKey,
    CacheScope,
    CosineVerifier,
    DocumentVersion,
    EntryInfo,
    HitVerifier,
    SemanticCache,
)
from .chunking import Chunk, chunk_sections
from .documents import Collection, DocumentInfo, DocumentStore, IngestResult
from .embedder import Embedder, Encoded, HashEmbedder, MiniLMEmbedder, default_embedder
from .knowledge import KB_DIR, Knowledge, knowledge_embedder, looks_personal
from .loaders import LoadedDocument, Section, load_bytes, load_path
from .retrieval import Citation, Passage, Retriever, format_context

__all__ = [
    "KB_DIR",
    "CacheDecision",
    "CacheHit",
    "CacheKey",
    "CacheScope",
    "CachedModel",
    "Chunk",
    "Citation",
    "Collection",
    "CosineVerifier",
    "DocumentInfo",
    "DocumentStore",
    "DocumentVersion",
    "Embedder",
    "Encoded",
    "EntryInfo",
    "HashEmbedder",
    "HitVerifier",
    "IngestResult",
    "Knowledge",
    "LoadedDocument",
    "MiniLMEmbedder",
    "Passage",
    "Retriever",
    "Section",
    "SemanticCache",
    "chunk_sections",
    "default_embedder",
    "format_context",
    "knowledge_embedder",
    "load_bytes",
    "load_path",
    "looks_personal",
]
