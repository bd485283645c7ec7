"""`SemanticCache`: answers of earlier questions, served again to the same question asked
again — or asked in other words — inside the same scope.

A lookup tries the exact (normalised) question first, then the nearest cached questions of
the scope, which a `HitVerifier` scores; the best one is served if its score clears the
threshold for the false-hit rate the cache was configured with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from ...ledger import CallRecord, Ledger, Scope
from ...llm import Response
from ...llm.events import END_TURN
from ..embedder import Embedder, HashEmbedder, default_embedder
from ..retrieval import Passage
from ..vectors import content_hash, normalise_prompt
from .entries import CachedAnswer, DocumentVersion, Entries, EntryFilter, EntryInfo
from .guard import is_non_answer
from .scope import CacheScope
from .verifier import Candidate, CosineVerifier, HitVerifier

__all__ = ["CacheDecision", "CacheHit", "SemanticCache"]


@dataclass(frozen=True)
class CacheHit:
    answer: CachedAnswer
    exact: bool
    score: float  # 1.0 for an exact match
    latency_ms: float  # the whole lookup
    verify_ms: float = 0.0  # of which the verifier's scoring (0 for an exact match)

    @property
    def saved_usd(self) -> Decimal:
        return self.answer.cost_usd


@dataclass(frozen=True)
class CacheDecision:
    """What a lookup saw and decided (the admin hit-test shows it)."""

    hit: CacheHit | None
    threshold: float
    candidates: list[tuple[Candidate, float]] = field(default_factory=list)  # (found, score)
    latency_ms: float = 0.0  # the whole lookup
    verify_ms: float = 0.0  # of which the verifier's scoring


class SemanticCache:
    """The semantic cache on a pool of the threadline database.

    `false_hit_rate` is the share of hits allowed to serve another question's answer; the
    verifier turns it into its threshold. With the test `HashEmbedder` and no verifier,
    only exact repeats and near-verbatim rewordings hit (cosine ≥ 0.9)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        embedder: Embedder | None = None,
        verifier: HitVerifier | None = None,
        false_hit_rate: float = 0.05,
        neighbours: int = 4,
        ttl: timedelta | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        if not 0.0 < false_hit_rate < 1.0:
            raise ValueError("false_hit_rate must be between 0 and 1")
        self.pool = pool
        self.embedder = embedder or default_embedder()
        self.verifier = verifier or _default_verifier(self.embedder)
        self.false_hit_rate = false_hit_rate
        self.neighbours = neighbours
        self.ttl = ttl
        self.ledger = ledger or Ledger(pool)
        self._entries = Entries(pool)

    @property
    def threshold(self) -> float:
        return self.verifier.threshold(self.false_hit_rate)

    # -- lookup -------------------------------------------------------------------------------

    async def lookup(self, prompt: str, scope: CacheScope) -> CacheHit | None:
        """The cached answer for this question in this scope, or None."""
        decision = await self.decide(prompt, scope)
        if decision.hit is not None:
            self._entries.count_hit(decision.hit.answer.entry_id, decision.hit.saved_usd)
        return decision.hit

    async def decide(self, prompt: str, scope: CacheScope) -> CacheDecision:
        """Look up without counting a hit, and say why (for hit-testing)."""
        started = time.perf_counter()
        threshold = self.threshold
        key, digest = scope.key, _prompt_hash(prompt)
        k, floor = self.neighbours, self.verifier.min_cosine
        if self.embedder.instant:  # embed first: exact match and neighbours in one round trip
            vector = await self.embedder.embed_one(prompt)
            exact, candidates = await self._entries.lookup(key, digest, vector, k, floor)
        else:  # a model's embedding is skipped when the exact match hits
            exact = await self._entries.exact(key, digest)
            if exact is None:
                vector = await self.embedder.embed_one(prompt)
                candidates = await self._entries.nearest(key, vector, k, floor)
        if exact is not None:
            took = _ms(started)
            return CacheDecision(CacheHit(exact, True, 1.0, took), threshold, latency_ms=took)
        if not candidates:
            return CacheDecision(None, threshold, latency_ms=_ms(started))
        verifying = time.perf_counter()
        scores = await self._score(prompt, [c for c, _ in candidates])
        verify_ms, took = _ms(verifying), _ms(started)
        ranked = sorted(zip(candidates, scores, strict=True), key=lambda cs: -cs[1])
        (_, answer), score = ranked[0]
        hit = CacheHit(answer, False, score, took, verify_ms) if score >= threshold else None
        found = [(c, s) for (c, _), s in ranked]
        return CacheDecision(hit, threshold, found, latency_ms=took, verify_ms=verify_ms)

    async def _score(self, prompt: str, candidates: Sequence[Candidate]) -> list[float]:
        if isinstance(self.verifier, CosineVerifier):
            return self.verifier.scores(prompt, candidates)
        return await asyncio.to_thread(self.verifier.scores, prompt, candidates)

    async def get(self, entry_id: int) -> CachedAnswer | None:
        """A live entry's answer by id."""
        return await self._entries.answer(entry_id)

    # -- store --------------------------------------------------------------------------------

    async def store(
        self,
        prompt: str,
        answer: str,
        scope: CacheScope,
        *,
        provider: str = "",
        model: str = "",
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: Decimal | None = None,
        documents: Sequence[Passage | DocumentVersion] = (),
        ttl: timedelta | None = None,
        sources: Sequence[dict[str, Any]] = (),
    ) -> int | None:
        """Cache `answer` for `prompt` in `scope`, with what producing it cost (a hit saves
        that much), the documents it was built from (changing one drops the entry) and the
        sources its `[n]` markers cite (a hit shows them too).
        Returns the entry id, or None when a document changed since it was retrieved."""
        vector = await self.embedder.embed_one(prompt)
        cached = CachedAnswer(
            0,
            prompt,
            answer,
            provider,
            model,
            input_tokens,
            output_tokens,
            cost_usd or Decimal(0),
        )
        versions = {
            (d.document_id, d.content_hash): DocumentVersion(d.document_id, d.content_hash)
            for d in documents
        }
        return await self._entries.put(
            scope,
            prompt,
            _prompt_hash(prompt),
            vector,
            cached,
            ttl or self.ttl,
            list(versions.values()),
            sources,
        )

    async def store_response(
        self,
        prompt: str,
        response: Response,
        scope: CacheScope,
        *,
        documents: Sequence[Passage | DocumentVersion] = (),
        ttl: timedelta | None = None,
        sources: Sequence[dict[str, Any]] = (),
    ) -> int | None:
        """Cache a model's answer if it is a complete plain text (not tool calls, not cut
        short) that answers (`is_non_answer`: not "I could not find that", a refusal, an offer
        of a human), with what it cost (`response.cost_usd`, as its metering priced it: what
        a hit saves); returns the entry id, or None when not cached."""
        if response.stop_reason != END_TURN or response.tool_calls:
            return None
        if is_non_answer(response.text):
            return None
        return await self.store(
            prompt,
            response.text,
            scope,
            provider=response.provider,
            model=response.model,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            cost_usd=response.cost_usd,
            documents=documents,
            ttl=ttl,
            sources=sources,
        )

    async def sources(self, entry_id: int) -> list[dict[str, Any]]:
        """What a cached answer's `[n]` markers cite."""
        return await self._entries.sources(entry_id)

    async def store_many(
        self,
        answers: Sequence[tuple[str, str]],
        scope: CacheScope,
        *,
        cost_usd: Decimal | None = None,
        ttl: timedelta | None = None,
        batch: int = 256,
    ) -> None:
        """Cache many (question, answer) pairs of one scope at once (embedded in batches),
        e.g. to warm the cache from a FAQ."""
        for start in range(0, len(answers), batch):
            part = answers[start : start + batch]
            vectors = await self.embedder.embed([q for q, _ in part])
            rows = [
                (q, _prompt_hash(q), v, CachedAnswer(0, q, a, "", "", 0, 0, cost_usd or Decimal(0)))
                for (q, a), v in zip(part, vectors, strict=True)
            ]
            await self._entries.put_many(scope, rows, ttl or self.ttl)

    # -- the ledger ---------------------------------------------------------------------------

    def record_hit(self, hit: CacheHit, scope: Scope) -> asyncio.Future[None]:
        """Write the hit's ledger row: status `cached`, cost 0, saved what the original call
        cost. The future resolves once the row is durable."""
        answer = hit.answer
        spec = f"{answer.provider}:{answer.model}" if answer.provider else answer.model
        return self.ledger.submit(
            CallRecord(
                provider=answer.provider or "cache",
                requested_model=spec or "cache",
                model=answer.model or "cache",
                status="cached",
                latency_ms=hit.latency_ms,
                scope=scope,
                input_tokens=answer.input_tokens,
                output_tokens=answer.output_tokens,
                cost_usd=Decimal(0),
                saved_usd=answer.cost_usd,
                priced=True,
            )
        )

    # -- admin --------------------------------------------------------------------------------

    async def entries(
        self,
        scope: CacheScope | None = None,
        *,
        tenant: str | None = None,
        agent: str | None = None,
        limit: int = 100,
    ) -> list[EntryInfo]:
        """Cached entries, newest first, of one scope or filtered by tenant / agent."""
        which = EntryFilter(scope.key if scope else None, tenant, agent)
        return await self._entries.list(which, limit)

    async def flush(self) -> None:
        """Wait until the hit counters of past lookups are written."""
        await self._entries.flush()

    async def purge(
        self,
        scope: CacheScope | None = None,
        *,
        tenant: str | None = None,
        agent: str | None = None,
        entry_id: int | None = None,
        expired_only: bool = False,
    ) -> int:
        """Delete entries (all of them when no filter is given); returns how many."""
        which = EntryFilter(scope.key if scope else None, tenant, agent, entry_id, expired_only)
        return await self._entries.delete(which)


def _prompt_hash(prompt: str) -> str:
    return content_hash(normalise_prompt(prompt))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _default_verifier(embedder: Embedder) -> HitVerifier:
    if isinstance(embedder, HashEmbedder):
        return CosineVerifier(0.9)
    from .learned import LearnedVerifier

    return LearnedVerifier.bundled()
