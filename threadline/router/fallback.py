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
from ..ledger import CallNote, MeteredModel, Metering, refusal_of
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
        route = Route(self.specs, floor, messages, options, streams, cooldowns, ledger)
        route.health = await cooldowns.health(self.specs)
        for index, model in enumerate(self.models):
            outcome: str | None = None
            async with closing(self._consider(route, model)) as events:
                async for event in events:
                    if isinstance(event, str):
                        outcome = event
                    else:
                        yield event
            if outcome is None:  # answered: its end went out
                return
            next_model = self.specs[index + 1] if index + 1 < len(self.specs) else None
            fallback = route.leave(model.spec, next_model, outcome)
            if fallback is not None:
                yield Notice(fallback)
        raise route.exhausted()

    async def _consider(self, route: Route, model: MeteredModel) -> AsyncIterator[CallEvent | str]:
        """Use `model` if it can be used: its events, or (last) why the chain moves on."""
        cooldowns = route.cooldowns
        health = route.health.get(model.spec)
        if health is not None and health.cooling:
            yield "cooldown"
            return
        if not await self._fits_context(route, model):
            yield "context_window"
            return
        probing = health is not None  # half-open: one caller in all processes probes it
        if probing and not await cooldowns.try_probe(model.spec):
            yield "cooldown"
            return
        outcome: str | None = None
        try:
            async with closing(self._attempt(route, model)) as events:
                async for event in events:
                    if isinstance(event, str):
                        outcome = event
                    yield event
        except BaseException:
            if probing:
                await cooldowns.release_probe(model.spec)
            raise
        if probing and outcome is None:
            await cooldowns.recovered(model.spec)
        elif probing and outcome in _NO_VERDICT:
            await cooldowns.release_probe(model.spec)

    async def _fits_context(self, route: Route, model: Model) -> bool:
        calibration = route.ledger.budgets.calibration
        estimate = await calibration.estimate(model, route.messages, route.options.tools)
        return estimate + min(route.min_tokens, route.options.max_tokens) <= model.context_window

    async def _attempt(self, route: Route, model: MeteredModel) -> AsyncIterator[CallEvent | str]:
        """Call `model` (its metering admits it or refuses): its events, or (last) why the
        chain moves on."""
        options = route.options
        metering = options.get(Metering) or Metering()
        note = CallNote(route.primary, route.attempts + 1, route.reason)
        attempt = options.with_(replace(metering, note=note, min_tokens=route.min_tokens))
        max_tokens = options.max_tokens
        admitted = False
        try:
            called = model._events(route.messages, attempt, streams=route.streams)
            async with closing(called) as events:
                async for event in events:
                    if not admitted:
                        admitted = True
                        route.attempts += 1
                    if isinstance(event, StreamEnd):
                        yield Notice(route.summary(model.spec, model.provider, max_tokens))
                    elif isinstance(event, Notice):
                        capped = getattr(event.event, "max_tokens", None)
                        if event.kind == "budget.capped" and isinstance(capped, int):
                            max_tokens = capped
                    else:
                        route.passed(event)
                    yield event
        except LLMError as exc:
            if not admitted:
                route.attempts += 1
            if not _falls_back(exc):
                raise
            route.errors.append(exc)
            if exc.retryable:
                route.health[model.spec] = await route.cooldowns.failed(model.spec, exc)
            restart = route.restart(model.spec, exc)
            if restart is not None:
                yield restart
            yield _reason(exc)
        except Exception as exc:
            refusal = refusal_of(exc)
            if refusal is None or admitted:
                raise
            route.refusals.append((model.spec, refusal))
            yield refusal.reason
