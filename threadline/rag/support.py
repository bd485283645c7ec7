"""The support demo bot: answers questions about the (fictional) Tidewater TL-500 water
purifier from the bundled knowledge base (`kb/`), through hybrid retrieval, with citations;
repeated questions — in the same or other words — are served from the semantic cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from ..ledger import LLM, Scope
from ..llm import Message
from .cache import CachedLLM, CacheScope, SemanticCache
from .documents import Collection, DocumentStore
from .embedder import Embedder, default_embedder
from .retrieval import Citation, Retriever, format_context

__all__ = ["KB_DIR", "SupportAnswer", "SupportBot"]

KB_DIR = Path(__file__).resolve().parent / "kb"
PROMPT_VERSION = "support-1"
SYSTEM = (
    "You are the support assistant of Tidewater, maker of the TL-500 water purifier. "
    "Answer from the context only, briefly, and cite passages by their [number]. If the "
    "context does not answer the question, say so and offer a human agent."
)


@dataclass(frozen=True)
class SupportAnswer:
    text: str
    cached: bool
    citations: list[Citation]
    model: str


class SupportBot:
    """`await bot.answer("How often do I change the pre-filter?")`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        llm: LLM,
        *,
        model: str = "demo:threadline-demo",
        embedder: Embedder | None = None,
        cache: SemanticCache | None = None,
        tenant: str | None = None,
        collection: str = "tidewater-kb",
        kb_dir: Path = KB_DIR,
    ) -> None:
        self.embedder = embedder or default_embedder()
        self.documents = DocumentStore(pool, self.embedder)
        self.retriever = Retriever(pool, self.embedder)
        self.cache = cache or SemanticCache(pool, embedder=self.embedder)
        self.cached_llm = CachedLLM(llm, self.cache)
        self.model = model
        self.tenant = tenant
        self.collection_name = collection
        self.kb_dir = kb_dir
        self._collection: Collection | None = None

    @property
    def cache_scope(self) -> CacheScope:
        return CacheScope(
            agent="support",
            prompt_version=PROMPT_VERSION,
            model_policy=self.model,
            tenant=self.tenant,
        )

    async def collection(self) -> Collection:
        """The knowledge base collection, ingested on first use (unchanged files are
        skipped, changed ones re-embedded and their cached answers dropped)."""
        if self._collection is None:
            found = await self.documents.collection(self.collection_name, tenant=self.tenant)
            await self.documents.ingest_path(found, self.kb_dir)
            self._collection = found
        return self._collection

    async def answer(
        self, question: str, *, scope: Scope | None = None, on_delta: Any = None
    ) -> SupportAnswer:
        scope = (scope or Scope()).with_(agent="support", tenant=self.tenant)
        hit = await self.cached_llm.lookup(question, self.cache_scope, scope)
        if hit is not None:
            served = await self.cached_llm.serve_hit(hit, on_delta)
            return SupportAnswer(served.response.text, True, [], served.response.model)
        passages = await self.retriever.search(question, await self.collection(), k=4)
        messages = self.messages(question, [format_context(passages)])
        result = await self.cached_llm.call_and_store(
            self.model,
            messages,
            question=question,
            cache_scope=self.cache_scope,
            scope=scope,
            documents=passages,
            on_delta=on_delta,
        )
        citations = [p.citation for p in passages]
        return SupportAnswer(result.response.text, False, citations, result.response.model)

    @staticmethod
    def messages(question: str, context: Sequence[str]) -> list[Message]:
        return [Message.system(SYSTEM + "\n\n" + "\n".join(context)), Message.user(question)]
