"""`Models`: the models an application calls, by name or policy, each built once as a stack
(metered into one ledger; a policy's chain with fallback), and called durably.

    models = Models(Ledger(pool))
    answer = await models.request("openai:gpt-4o-mini", messages, scope=Scope(user="ann"))
    answer = await models.request(ModelPolicy(SONNET, fallback=[HAIKU]), messages)

A `provider:model` name (or a `Model`) is called through its `MeteredModel` (step
`llm:<name>`); a `ModelPolicy` through a `FallbackModel` of its metered models (step
`route:<first model>`). Both are plain `Model`s: `models.stack(policy)` gives the stack for a
turn to hold or to wrap further.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from ..engine import RetryPolicy, current_context
from ..engine.retry import NO_RETRY
from ..errors import ConfigurationError
from ..ledger import (
    BoundBudget,
    Budget,
    BudgetExceeded,
    Ledger,
    MeteredModel,
    Metering,
    Mode,
    Scope,
)
from ..ledger.source import LedgerSource
from ..llm import CallEvent, CallOptions, LLMError, Message, Model, Response, ToolDef, get_model
from .cooldowns import CooldownPolicy, Cooldowns
from .durable import call_model
from .fallback import FallbackModel
from .policy import ModelPolicy
from .route import EventHook, OnRoutedDelta

__all__ = ["Models", "worth_retrying"]


def worth_retrying(exc: BaseException) -> bool:
    """A `retry_on` for steps that make LLM calls: never a budget refusal, a configuration
    error or an error the provider would repeat; yes to transient failures."""
    if isinstance(exc, BudgetExceeded | ConfigurationError):
        return False
    return exc.retryable if isinstance(exc, LLMError) else True


def _worth_retrying_and(policy: RetryPolicy) -> Any:
    def retry_on(exc: BaseException) -> bool:
        return worth_retrying(exc) and policy.retry_on(exc)

    return retry_on


class Models:
    """See the module docstring.

    `model_options` maps a provider to options for its adapter (`api_key`, `base_url`, ...).
    `mode` is how budgets bound a call's input ("strict": an upper bound, "estimate": a
    calibrated estimate); `min_output_tokens` the fewest output tokens worth a call when a
    budget lowers `max_tokens`; `budget_wait` how long a call waits for money held by calls
    in flight; `cooldowns` how long a failing model of a chain rests; `step_retry` retries a
    routed step whose whole chain failed (never on `BudgetExceeded`); `on_event` hears every
    fallback, restart and budget notice.
    """

    def __init__(
        self,
        ledger: Ledger | None = None,
        *,
        model_options: dict[str, dict[str, Any]] | None = None,
        mode: Mode = "strict",
        min_output_tokens: int = 256,
        budget_wait: float = 0.0,
        cooldowns: CooldownPolicy | None = None,
        step_retry: RetryPolicy = NO_RETRY,
        on_event: EventHook | None = None,
    ) -> None:
        self._ledgers = LedgerSource(ledger)
        self._model_options = model_options or {}
        self._models: dict[str, Model] = {}
        self._metered: dict[str, MeteredModel] = {}
        self._chains: dict[tuple[tuple[str, ...], int | None], FallbackModel] = {}
        self._cooldowns: Cooldowns | None = None
        self.mode: Mode = mode
        self.min_output_tokens = min_output_tokens
        self.budget_wait = budget_wait
        self.cooldown_policy = cooldowns or CooldownPolicy()
        self.step_retry = replace(step_retry, retry_on=_worth_retrying_and(step_retry))
        self.on_event = on_event

    @property
    def ledger(self) -> Ledger:
        """The ledger given, or inside a workflow the one on its engine's database."""
        found = self._ledgers.find()
        if found is None:
            raise ConfigurationError(
                "these models have no ledger: pass Models(Ledger(pool)), or call them in a workflow"
            )
        return found

    def cooldowns(self, pool: asyncpg.Pool | None = None) -> Cooldowns:
        """The cooldowns every chain of these models shares, on the ledger's database."""
        pool = pool or self.ledger.pool
        if self._cooldowns is None or self._cooldowns.pool is not pool:
            self._cooldowns = Cooldowns(pool, self.cooldown_policy)
        return self._cooldowns

    # -- stacks -------------------------------------------------------------------------------

    def model(self, model: str | Model) -> Model:
        """The provider's model (built once per name, with its provider's options)."""
        if isinstance(model, Model):
            return model
        found = self._models.get(model)
        if found is None:
            provider = model.partition(":")[0]
            found = get_model(model, **self._model_options.get(provider, {}))
            self._models[model] = found
        return found

    def metered(self, model: str | Model) -> MeteredModel:
        """The model, metered into these models' ledger."""
        if isinstance(model, MeteredModel):
            return model
        key = model if isinstance(model, str) else f"{model.spec}@{id(model)}"
        found = self._metered.get(key)
        if found is None:
            found = MeteredModel(
                self.model(model),
                self._ledgers.given,  # None: the call's (`call_model` sets it), or the run's
                mode=self.mode,
                min_output_tokens=self.min_output_tokens,
                budget_wait=self.budget_wait,
            )
            self._metered[key] = found
        return found

    def chain(self, policy: ModelPolicy | str | Model) -> FallbackModel:
        """The policy's fallback chain of metered models."""
        policy = ModelPolicy.of(policy)
        key = (
            tuple(m if isinstance(m, str) else str(id(m)) for m in policy.models),
            policy.min_output_tokens,
        )
        found = self._chains.get(key)
        if found is None:
            found = FallbackModel(
                [self.metered(m) for m in policy.models],
                min_output_tokens=policy.min_output_tokens,
                cooldowns=self.cooldowns,
            )
            self._chains[key] = found
        return found

    def stack(self, model: ModelPolicy | str | Model) -> Model:
        """What a call of `model` goes through: a policy's chain, else the metered model."""
        return self.chain(model) if isinstance(model, ModelPolicy) else self.metered(model)

    async def aclose(self) -> None:
        """Write pending ledger rows, then close the models' HTTP clients."""
        await self._ledgers.aclose()
        for model in self._models.values():
            await model.aclose()
        self._models.clear()
        self._metered.clear()
        self._chains.clear()

    # -- calls --------------------------------------------------------------------------------

    def options(
        self,
        *,
        scope: Scope | None = None,
        tools: Sequence[ToolDef] = (),
        max_tokens: int = 1024,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        budget: Budget | BoundBudget | None = None,
        mode: Mode | None = None,
        ledger: Ledger | None = None,
    ) -> CallOptions:
        """A call's options, with the ledger's entry (`ledger`: where the stack's metered
        models write when they have no ledger of their own)."""
        metering = Metering(
            scope=scope or Scope(),
            budget=budget,
            mode=mode or self.mode,
            min_tokens=self.min_output_tokens,
            ledger=ledger,
        )
        return CallOptions(tools, max_tokens, temperature, stop, (metering,))

    async def request(
        self,
        model: ModelPolicy | str | Model,
        messages: Sequence[Message],
        *,
        scope: Scope | None = None,
        tools: Sequence[ToolDef] = (),
        max_tokens: int = 1024,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        budget: Budget | BoundBudget | None = None,
        mode: Mode | None = None,
        on_delta: OnRoutedDelta | None = None,
        on_event: EventHook | None = None,
    ) -> Response:
        """One answer (see the module docstring). With `on_delta` the call streams and each
        event is passed on as it arrives. `budget` adds limits for this call (`usd`: the call
        itself; `per_*`: its scopes). Raises `BudgetExceeded` when no model fits the budgets;
        from a chain, `NoModelAvailable` when every model is cooling down or failing and
        `ContextWindowExceeded` when none holds the prompt. A chain's answer is a
        `RoutedResponse`."""
        stack = self.stack(model)
        options = self.options(
            scope=scope,
            tools=tools,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            budget=budget,
            mode=mode,
        )
        routed = isinstance(stack, FallbackModel)
        return await call_model(
            stack,
            messages,
            options,
            ledger=self.ledger,  # resolved here: inside a step body there is no workflow
            on_delta=on_delta,
            hooks=[h for h in (self.on_event, on_event) if h is not None],
            name=f"route:{stack.spec}" if routed else f"llm:{stack.spec}",
            retry=self.step_retry if routed else NO_RETRY,
        )

    def stream(
        self,
        model: ModelPolicy | str | Model,
        messages: Sequence[Message],
        *,
        scope: Scope | None = None,
        tools: Sequence[ToolDef] = (),
        max_tokens: int = 1024,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        budget: Budget | BoundBudget | None = None,
        mode: Mode | None = None,
    ) -> AsyncIterator[CallEvent]:
        """The answer's events as they arrive (the last is `StreamEnd`). Not journaled:
        inside a workflow use `request(..., on_delta=...)`."""
        if current_context() is not None:
            raise ConfigurationError(
                "Models.stream is not durable; inside a workflow use request(..., on_delta=...)"
            )
        options = self.options(
            scope=scope,
            tools=tools,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            budget=budget,
            mode=mode,
            ledger=self.ledger,
        )
        return self.stack(model).stream(messages, options)
