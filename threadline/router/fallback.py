"""`FallbackModel`: one answer from the best model of a chain that is up, fits and is
affordable.

    chain = FallbackModel([MeteredModel(sonnet), MeteredModel(haiku), MeteredModel(llama)])

For each model in order, the chain skips it if it is cooling down (a circuit breaker shared
through the database), if the prompt does not fit its context window, or if its worst case
does not fit every budget of the call with at least the fewest output tokens worth a call
(its `MeteredModel` lowers `max_tokens` to what the tightest budget affords and tells
`Capped`: a stronger model with fewer tokens is preferred to a cheaper one, down to that
floor). Otherwise it calls it; on a rate limit, overload, 5xx, timeout, connection error or
broken stream it cools the model down and falls back to the next (`Fallback` notice). A
stream that fails before any output falls back silently; after output the stream has a
`Restart` and the answer starts again on the next model. The last notice before the end
says how the call was answered (`RouteSummary`; `request` returns a `RoutedResponse`).

The chain's models are `MeteredModel`s: their ledger's database holds the cooldowns, and
their calibration says whether a prompt fits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

import asyncpg

from ..errors import ConfigurationError
from ..ledger import CallNote, Capped, MeteredModel, Metering, refusal_of
from ..llm import (
    CallEvent,
    CallOptions,
    ContextWindowExceeded,
    LLMError,
    Message,
    Model,
    Notice,
    Response,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
)
from ..llm.model import closing
from .cooldowns import CooldownPolicy, Cooldowns
from .route import Answer, Route

__all__ = ["FallbackModel"]

# Reasons for leaving a model that end its probe without a verdict on its health.
_NO_VERDICT = frozenset({"budget", "unpriced", "context_window"})


def _falls_back(exc: LLMError) -> bool:
    return exc.retryable or isinstance(exc, ContextWindowExceeded)


def _reason(exc: LLMError) -> str:
    return "context_window" if isinstance(exc, ContextWindowExceeded) else exc.code


class FallbackModel(Model):
    """A chain of metered models, most capable first; see the module docstring.
    `min_output_tokens`: the fewest output tokens worth calling a model with (else the
    call's, else each model's own); `cooldowns`: how long a failing model rests, or a
    function giving the `Cooldowns` on a database that several chains share."""

    def __init__(
        self,
        models: Sequence[MeteredModel],
        *,
        min_output_tokens: int | None = None,
        cooldowns: CooldownPolicy | Callable[[asyncpg.Pool], Cooldowns] | None = None,
    ) -> None:
        if not models:
            raise ConfigurationError("a fallback chain needs at least one model")
        first = models[0]
        super().__init__(first.name, context_window=max(m.context_window for m in models))
        self.provider = first.provider
        self.models = tuple(models)
        self.min_output_tokens = min_output_tokens
        self._shared = None if isinstance(cooldowns, CooldownPolicy | None) else cooldowns
        self.cooldown_policy = cooldowns if isinstance(cooldowns, CooldownPolicy) else None
        self._cooldowns: Cooldowns | None = None

    def __repr__(self) -> str:
        return f"FallbackModel([{', '.join(repr(m) for m in self.models)}])"

    @property
    def specs(self) -> tuple[str, ...]:
        return tuple(m.spec for m in self.models)

    def cooldowns(self, pool: asyncpg.Pool) -> Cooldowns:
        """The cooldowns on the ledger's database (those of the chains it shares them with,
        when built with a function giving them)."""
        if self._shared is not None:
            return self._shared(pool)
        if self._cooldowns is None or self._cooldowns.pool is not pool:
            self._cooldowns = Cooldowns(pool, self.cooldown_policy or CooldownPolicy())
        return self._cooldowns

    async def aclose(self) -> None:
        for model in self.models:
            await model.aclose()

    async def _request(self, messages: Sequence[Message], options: CallOptions) -> Response:
        answer = Answer(self.provider, self.name)
        async for event in self._events(messages, options, streams=False):
            answer.add(event)
        return answer.build()

    def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[CallEvent]:
        return self._events(messages, options, streams=True)

    async def _events(
        self, messages: Sequence[Message], options: CallOptions, *, streams: bool
    ) -> AsyncIterator[CallEvent]:
        metering = options.get(Metering) or Metering()
        ledger = self.models[0].ledger_for(metering)
        cooldowns = self.cooldowns(ledger.pool)
        floor = self.min_output_tokens or metering.min_tokens or self.models[0].min_output_tokens
        route = Route(self.specs, floor, messages, options, cooldowns, ledger)
        route.health = await cooldowns.health(self.specs)
        for index, model in enumerate(self.models):
            reason = await self._unusable(route, model)
            probing = reason is None and model.spec in route.health  # half-open: one probe
            if probing and not await cooldowns.try_probe(model.spec):
                reason = "cooldown"
            if reason is None:
                # One generator over the member's events: each piece crosses this layer once.
                metering = options.get(Metering) or Metering()
                note = CallNote(route.primary, route.attempts + 1, route.reason)
                attempt = options.with_(replace(metering, note=note, min_tokens=floor))
                max_tokens, admitted = options.max_tokens, False
                try:
                    called = model._events(messages, attempt, streams=streams)
                    async with closing(called) as events:
                        async for event in events:
                            if not admitted:
                                admitted = True
                                route.attempts += 1
                            if isinstance(event, TextDelta):
                                route.delivered.append(event.text)
                            elif isinstance(event, StreamEnd):
                                summary = route.summary(model.spec, model.provider, max_tokens)
                                yield Notice(summary)
                            elif isinstance(event, Notice):
                                if isinstance(event.event, Capped):
                                    max_tokens = event.event.max_tokens
                            elif isinstance(event, ToolCallDelta):
                                route.delivered.append(event.arguments_delta or " ")
                            yield event
                except LLMError as exc:
                    if not admitted:
                        route.attempts += 1
                    if not _falls_back(exc):
                        await self._no_verdict(route, model, probing)
                        raise
                    reason = await self._failed(route, model, exc)
                    restart = route.restart(model.spec, exc)
                    if restart is not None:
                        yield restart
                except Exception as exc:
                    refusal = refusal_of(exc)
                    if refusal is None or admitted:
                        await self._no_verdict(route, model, probing)
                        raise
                    route.refusals.append((model.spec, refusal))
                    reason = refusal.reason
                except BaseException:  # cancelled: the probe goes to the next caller
                    await self._no_verdict(route, model, probing)
                    raise
                if reason is None:  # answered: its end went out
                    if probing:
                        await cooldowns.recovered(model.spec)
                    return
                if probing and reason in _NO_VERDICT:
                    await cooldowns.release_probe(model.spec)
            next_model = self.specs[index + 1] if index + 1 < len(self.specs) else None
            fallback = route.leave(model.spec, next_model, reason)
            if fallback is not None:
                yield Notice(fallback)
        raise route.exhausted()

    async def _unusable(self, route: Route, model: MeteredModel) -> str | None:
        """Why `model` cannot be tried now (cooling down, prompt too long), or None."""
        health = route.health.get(model.spec)
        if health is not None and health.cooling:
            return "cooldown"
        calibration = route.ledger.budgets.calibration
        estimate = await calibration.estimate(model, route.messages, route.options.tools)
        if estimate + min(route.min_tokens, route.options.max_tokens) > model.context_window:
            return "context_window"
        return None

    async def _failed(self, route: Route, model: MeteredModel, error: LLMError) -> str:
        """A failure worth another model: cool this one down when waiting would help."""
        route.errors.append(error)
        if error.retryable:
            route.health[model.spec] = await route.cooldowns.failed(model.spec, error)
        return _reason(error)

    async def _no_verdict(self, route: Route, model: MeteredModel, probing: bool) -> None:
        """The attempt ended saying nothing of the model's health: free its probe."""
        if probing:
            await route.cooldowns.release_probe(model.spec)
