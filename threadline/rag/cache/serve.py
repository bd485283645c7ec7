"""`CachedModel`: model calls through the semantic cache. A hit streams the cached answer like
a live one and writes a `cached` ledger row with the money it saved; a miss calls the model
(metered as usual) and caches its answer when it is one.

A call is cached only when its options carry a `CacheKey` (the question that keys the cache
and the scope it is answered in); without one the call goes straight to the model.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from ...engine.context import current_context
from ...ledger import Metering, Scope
from ...llm import (
    CallEvent,
    CallOptions,
    Message,
    Model,
    ResponseBuilder,
    StreamEnd,
    TextDelta,
    Usage,
    WrapperModel,
)
from ...llm.events import END_TURN
from ...llm.model import closing
from ..retrieval import Passage
from .entries import DocumentVersion
from .scope import CacheScope
from .semantic import CacheHit, SemanticCache

__all__ = ["CacheKey", "CachedModel", "lookup", "replay_stream"]


@dataclass(frozen=True)
class CacheKey:
    """The cache's entry in a call's `CallOptions.context`: the `question` (the text that
    keys the cache), the `scope` an answer is shared in, what the prompt was built from
    (`documents`: a change drops the cached answer) and how long the answer keeps (`ttl`).
    `cacheable=False`: neither read nor write (a follow-up, whose answer depends on the
    conversation)."""

    question: str
    scope: CacheScope
    documents: Sequence[Passage | DocumentVersion] = ()
    ttl: timedelta | None = None
    cacheable: bool = True


async def replay_stream(hit: CacheHit) -> AsyncIterator[CallEvent]:
    """The cached answer as the events a live stream would give: word by word, then the end
    (with the original call's usage; it cost nothing)."""
    for word in re.findall(r"\S+\s*|\s+", hit.answer.answer):
        yield TextDelta(word)
    usage = Usage(hit.answer.input_tokens, hit.answer.output_tokens)
    answer = hit.answer
    yield StreamEnd(
        END_TURN,
        usage,
        answer.model or None,
        cost_usd=Decimal(0),
        cached=True,
        provider=answer.provider or "cache",
    )


class CachedModel(WrapperModel):
    """`model` behind `cache`: see the module docstring. The answer served from the cache
    has `cached` set, the provider and model of the call that made it, and cost 0."""

    def __init__(self, model: Model, cache: SemanticCache) -> None:
        super().__init__(model)
        self.cache = cache

    def _events(
        self, messages: Sequence[Message], options: CallOptions, *, streams: bool
    ) -> AsyncIterator[CallEvent]:
        key = options.get(CacheKey)
        if key is None or not key.cacheable:
            return self.wrapped._events(messages, options, streams=streams)
        return self._cached(messages, options, key, streams)

    async def _cached(
        self, messages: Sequence[Message], options: CallOptions, key: CacheKey, streams: bool
    ) -> AsyncIterator[CallEvent]:
        metering = options.get(Metering) or Metering()
        hit = await self.cache.lookup(key.question, key.scope)
        if hit is not None:
            await self.cache.record_hit(hit, metering.scope)
            async for event in replay_stream(hit):
                yield event
            return
        builder = ResponseBuilder(self.provider, self.name)
        async with closing(self.wrapped._events(messages, options, streams=streams)) as events:
            async for event in events:
                builder.add(event)
                if isinstance(event, StreamEnd):  # cached before the caller hears the end
                    response = builder.build()
                    await self.cache.store_response(
                        key.question, response, key.scope, documents=key.documents, ttl=key.ttl
                    )
                yield event


async def lookup(
    cache: SemanticCache, question: str, cache_scope: CacheScope, scope: Scope | None = None
) -> CacheHit | None:
    """The cached answer, with its `cached` ledger row written; None on a miss. In a workflow
    the decision is a journaled step: a replay serves what was served."""
    scope = scope or Scope()
    ctx = current_context()
    if ctx is None:
        found = await cache.lookup(question, cache_scope)
        if found is not None:
            await cache.record_hit(found, scope)
        return found
    step_scope = scope.with_(run_id=scope.run_id or ctx.run_id, step_no=ctx.step_no + 1)

    async def body() -> int | None:
        found = await cache.lookup(question, cache_scope)
        if found is None:
            return None
        await cache.record_hit(found, step_scope)
        return found.answer.entry_id

    entry_id: int | None = await ctx.step(body, name="cache:lookup")
    if entry_id is None:
        return None
    answer = await cache.get(entry_id)
    return None if answer is None else CacheHit(answer, False, 1.0, 0.0)
