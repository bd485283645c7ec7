"""Model calls through the semantic cache: a hit streams the cached answer like a live one
and writes a `cached` ledger row with the money it saved; a miss calls the model (metered
as usual) and caches its answer when the turn is cacheable."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ...engine.context import current_context
from ...ledger import LLM, Scope
from ...llm import Message, Model, Response, StreamEnd, StreamEvent, TextDelta, Usage
from ...llm.events import END_TURN
from ..retrieval import Passage
from .entries import DocumentVersion
from .scope import CacheScope
from .semantic import CacheHit, SemanticCache

__all__ = ["CachedLLM", "CachedResponse", "replay_stream"]


@dataclass(frozen=True)
class CachedResponse:
    response: Response
    cached: bool
    hit: CacheHit | None = None


async def replay_stream(hit: CacheHit) -> AsyncIterator[StreamEvent]:
    """The cached answer as the events a live stream would give: word by word, then the end
    (with the original call's usage)."""
    for word in re.findall(r"\S+\s*|\s+", hit.answer.answer):
        yield TextDelta(word)
    usage = Usage(hit.answer.input_tokens, hit.answer.output_tokens)
    yield StreamEnd(END_TURN, usage, hit.answer.model or None)


def _response(hit: CacheHit) -> Response:
    a = hit.answer
    usage = Usage(a.input_tokens, a.output_tokens)
    return Response(a.answer, (), usage, END_TURN, a.model, a.provider or "cache")


class CachedLLM:
    """`request` as `LLM.request`, plus the question that keys the cache and its scope."""

    def __init__(self, llm: LLM, cache: SemanticCache) -> None:
        self.llm = llm
        self.cache = cache

    async def request(
        self,
        model: str | Model,
        messages: Sequence[Message],
        *,
        question: str,
        cache_scope: CacheScope,
        cacheable: bool = True,
        scope: Scope | None = None,
        documents: Sequence[Passage | DocumentVersion] = (),
        ttl: timedelta | None = None,
        on_delta: Any = None,
        max_tokens: int = 1024,
    ) -> CachedResponse:
        """One answer, from the cache when `cacheable` and the question was answered before
        in `cache_scope`. `documents`: what the prompt was built from (a change drops the
        cached answer)."""
        scope = scope or Scope()
        if cacheable and (hit := await self.lookup(question, cache_scope, scope)) is not None:
            return await self.serve_hit(hit, on_delta)
        return await self.call_and_store(
            model,
            messages,
            question=question,
            cache_scope=cache_scope if cacheable else None,
            scope=scope,
            documents=documents,
            ttl=ttl,
            on_delta=on_delta,
            max_tokens=max_tokens,
        )

    async def serve_hit(self, hit: CacheHit, on_delta: Any = None) -> CachedResponse:
        """Stream a hit's answer to `on_delta` as a live answer would arrive."""
        async for event in replay_stream(hit):
            if on_delta is not None and (result := on_delta(event)) is not None:
                await result
        return CachedResponse(_response(hit), True, hit)

    async def call_and_store(
        self,
        model: str | Model,
        messages: Sequence[Message],
        *,
        question: str,
        cache_scope: CacheScope | None,
        scope: Scope,
        documents: Sequence[Passage | DocumentVersion] = (),
        ttl: timedelta | None = None,
        on_delta: Any = None,
        max_tokens: int = 1024,
    ) -> CachedResponse:
        """Call the model (metered); cache a complete text answer when a scope is given."""
        response = await self.llm.request(
            model, messages, scope=scope, on_delta=on_delta, max_tokens=max_tokens
        )
        if cache_scope is not None:
            await self.cache.store_response(
                question,
                response,
                cache_scope,
                documents=documents,
                ttl=ttl,
                overrides=self.llm.ledger.overrides,
            )
        return CachedResponse(response, False)

    async def lookup(
        self, question: str, cache_scope: CacheScope, scope: Scope | None = None
    ) -> CacheHit | None:
        """The cached answer, with its `cached` ledger row written; None on a miss."""
        scope = scope or Scope()
        ctx = current_context()
        if ctx is None:
            found = await self.cache.lookup(question, cache_scope)
            if found is not None:
                await self.cache.record_hit(found, scope)
            return found
        # In a workflow the decision is a journaled step: a replay serves what was served.
        step_scope = scope.with_(run_id=scope.run_id or ctx.run_id, step_no=ctx.step_no + 1)

        async def body() -> int | None:
            found = await self.cache.lookup(question, cache_scope)
            if found is None:
                return None
            await self.cache.record_hit(found, step_scope)
            return found.answer.entry_id

        entry_id: int | None = await ctx.step(body, name="cache:lookup")
        if entry_id is None:
            return None
        answer = await self.cache.get(entry_id)
        return None if answer is None else CacheHit(answer, False, 1.0, 0.0)
