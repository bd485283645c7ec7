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
    CachedLLM,
    CachedResponse,
    CacheHit,
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
from .loaders import LoadedDocument, Section, load_bytes, load_path
from .retrieval import Citation, Passage, Retriever, format_context
from .support import SupportAnswer, SupportBot

__all__ = [
    "CacheDecision",
    "CacheHit",
    "CacheScope",
    "CachedLLM",
    "CachedResponse",
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
    "LoadedDocument",
    "MiniLMEmbedder",
    "Passage",
    "Retriever",
    "Section",
    "SemanticCache",
    "SupportAnswer",
    "SupportBot",
    "chunk_sections",
    "default_embedder",
    "format_context",
    "load_bytes",
    "load_path",
]
