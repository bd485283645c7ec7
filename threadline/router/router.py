"""`Router`: one answer from the best model of a chain that is up, fits and is affordable.

    router = Router(LLM(ledger))
    policy = ModelPolicy("anthropic:claude-sonnet-4-5",
                         fallback=["anthropic:claude-haiku-4-5", "ollama:llama3.2"])
    answer = await router.request(policy, messages, scope=Scope(tenant="acme"))

For each model in order, the router skips it if it is cooling down (a circuit breaker shared
through the database), if the prompt does not fit its context window, or if its worst case does
not fit every budget of the call with at least `min_output_tokens` (lowering `max_tokens` to
what the tightest budget affords, and telling `Capped`: a stronger model with fewer tokens is
preferred to a cheaper one, down to that floor). Otherwise it calls it; on a rate limit,
overload, 5xx, timeout, connection error or broken stream it cools the model down and falls
back to the next.
A stream that fails before any output falls back silently; after output the caller's
`on_delta` gets a `Restart` and the answer starts again on the next model.

Inside a workflow the whole routed call is one journaled step (`route:<first model>`): a
replay returns the recorded answer and buys nothing; see docs/adr/0003-routed-call-is-one-step.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from ..engine import RetryPolicy, current_context
from ..engine.retry import NO_RETRY
from ..errors import ConfigurationError, StepError
from ..ledger import LLM, Budget, BudgetExceeded, CallNote, CallOptions, Ledger, Refusal, Scope
from ..ledger.admission import Receipt, budget_error, emit_events, events_json
from ..ledger.carrier import HeldRows
from ..ledger.limits import BoundBudget, Mode
from ..llm import ContextWindowExceeded, LLMError, Message, Model, ToolDef
from .cooldowns import CooldownPolicy, Cooldowns
from .events import Capped
from .policy import ModelPolicy
from .route import EventHook, OnRoutedDelta, Route, RoutedResponse, call_hook

__all__ = ["Router", "worth_retrying"]


def worth_retrying(exc: BaseException) -> bool:
    """A `retry_on` for steps that make LLM calls: never a budget refusal, a configuration
    error or an error the provider would repeat; yes to transient failures."""
    if isinstance(exc, BudgetExceeded | ConfigurationError):
        return False
    return exc.retryable if isinstance(exc, LLMError) else True


def _falls_back(exc: LLMError) -> bool:
    return exc.retryable or isinstance(exc, ContextWindowExceeded)


def _reason(exc: LLMError) -> str:
    return "context_window" if isinstance(exc, ContextWindowExceeded) else exc.code


class Router:
    """Routes calls over model policies; see the module docstring.

    `step_retry` retries a routed step whose whole chain failed (inside a workflow; never on
    `BudgetExceeded`); `on_event` hears every fallback, restart and budget notice.
    """

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        cooldowns: CooldownPolicy | None = None,
        step_retry: RetryPolicy = NO_RETRY,
        on_event: EventHook | None = None,
    ) -> None:
        self.llm = llm or LLM()
        self.cooldown_policy = cooldowns or CooldownPolicy()
        self.step_retry = replace(step_retry, retry_on=_and(step_retry))
        self.on_event = on_event
        self._cooldowns: Cooldowns | None = None

    def cooldowns(self, pool: asyncpg.Pool | None = None) -> Cooldowns:
        """The shared cooldowns on the ledger's database."""
        pool = pool or self.llm.ledger.pool
        if self._cooldowns is None or self._cooldowns.pool is not pool:
            self._cooldowns = Cooldowns(pool, self.cooldown_policy)
        return self._cooldowns

    async def aclose(self) -> None:
        await self.llm.aclose()

    async def request(
        self,
        policy: ModelPolicy | str | Model,
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
    ) -> RoutedResponse:
        """One answer from the first model of `policy` that can give it (module docstring).
        Raises `BudgetExceeded` when no model fits the budgets, `NoModelAvailable` when every
        model is cooling down or failing, `ContextWindowExceeded` when none holds the prompt."""
        policy = ModelPolicy.of(policy)
        options = CallOptions(tools, max_tokens, temperature, stop)
        scope = scope or Scope()
        ledger = self.llm.ledger  # resolved here: inside a step body there is no workflow context
        hooks = [h for h in (self.on_event, on_event) if h is not None]
        min_tokens = policy.min_output_tokens or self.llm.min_output_tokens
        ctx = current_context()
        if ctx is None:
            plan = self.llm.call_budget(scope, budget, mode=mode)
            route = Route(policy, messages, options, scope, plan, min_tokens, on_delta, hooks)
            return await self._route(route, ledger, durable=False)
        step_scope = scope.with_(run_id=scope.run_id or ctx.run_id, step_no=ctx.step_no + 1)
        plan = self.llm.call_budget(step_scope, budget, mode=mode, ctx=ctx)

        held = HeldRows(ledger)  # the calls' rows commit with the step's record

        async def step_body() -> dict[str, Any]:
            route = Route(policy, messages, options, step_scope, plan, min_tokens, on_delta, hooks)
            route.hold = held
            response = await self._route(route, ledger, durable=True)
            return {"response": response.to_json(), "events": route.events}

        try:
            recorded: dict[str, Any] = await ctx.step(
                step_body, name=f"route:{policy.primary}", retry=self.step_retry, record_with=held
            )
        except StepError as exc:
            exceeded = budget_error(exc)
            if exceeded is None:
                raise
            await ctx.emit("budget.exceeded", exceeded.to_json())
            raise exceeded from exc
        notices = await held.notices()  # a first run's: a replay finds them in the record
        for notice in notices:
            for hook in hooks:
                await call_hook(hook, notice)
        await emit_events(ctx, [*recorded["events"], *events_json(notices)])
        return RoutedResponse.from_json(recorded["response"])

    # -- the chain ----------------------------------------------------------------------------

    async def _route(self, route: Route, ledger: Ledger, durable: bool) -> RoutedResponse:
        cooldowns = self.cooldowns(ledger.pool)
        specs = route.policy.specs
        route.health = await cooldowns.health(specs)
        for index, entry in enumerate(route.policy.models):
            model = self.llm.model(entry)
            outcome = await self._consider(route, model, cooldowns, ledger, durable)
            if isinstance(outcome, RoutedResponse):
                return outcome
            next_model = specs[index + 1] if index + 1 < len(specs) else None
            await route.leave(model.spec, next_model, outcome)
        raise route.exhausted()

    async def _consider(
        self, route: Route, model: Model, cooldowns: Cooldowns, ledger: Ledger, durable: bool
    ) -> RoutedResponse | str:
        """Use `model` if it can be used: its answer, or why the router moves on."""
        health = route.health.get(model.spec)
        if health is not None and health.cooling:
            return "cooldown"
        if not await self._fits_context(route, model, ledger):
            return "context_window"
        probing = health is not None  # half-open: one caller in all processes probes it
        if probing and not await cooldowns.try_probe(model.spec):
            return "cooldown"
        try:
            outcome = await self._attempt(route, model, cooldowns, ledger, durable)
        except BaseException:
            if probing:
                await cooldowns.release_probe(model.spec)
            raise
        if probing and isinstance(outcome, RoutedResponse):
            await cooldowns.recovered(model.spec)
        elif probing and outcome in ("budget", "unpriced", "context_window"):
            await cooldowns.release_probe(model.spec)
        return outcome

    async def _fits_context(self, route: Route, model: Model, ledger: Ledger) -> bool:
        tools = route.options.tools
        estimate = await ledger.budgets.calibration.estimate(model, route.messages, tools)
        return estimate + min(route.min_tokens, route.options.max_tokens) <= model.context_window

    async def _attempt(
        self, route: Route, model: Model, cooldowns: Cooldowns, ledger: Ledger, durable: bool
    ) -> RoutedResponse | str:
        """Reserve and call `model`: its answer, or why the router moves on."""
        note = CallNote(route.policy.primary, route.attempts + 1, route.reason)
        llm, messages, options, scope = self.llm, route.messages, route.options, route.scope
        grant = await llm.admit(
            model,
            messages,
            options,
            scope,
            route.plan,
            note,
            ledger,
            min_tokens=route.min_tokens,
            streams=route.on_delta is not None,
        )
        if isinstance(grant, Refusal):
            route.refusals.append((model.spec, grant))
            return grant.reason
        if grant.max_tokens < options.max_tokens:  # the budget affords this model less output
            await route.tell(Capped(model.spec, grant.max_tokens, options.max_tokens))
        route.attempts += 1
        receipt = Receipt()
        durable = durable or grant.reservation_id is not None  # await its notices
        relay = route.relay if route.on_delta is not None else None
        try:
            response = await llm.call(
                model,
                messages,
                options,
                scope,
                relay,
                note,
                ledger,
                durable,
                grant,
                receipt,
                route.hold,
            )
        except LLMError as exc:
            await route.notices(await receipt.notices() if durable else ())
            if not _falls_back(exc):
                raise
            return await self._failed(route, model, cooldowns, exc)
        await route.notices(await receipt.notices() if durable else ())
        return route.answer(response, model.spec, grant.max_tokens)

    async def _failed(
        self, route: Route, model: Model, cooldowns: Cooldowns, error: LLMError
    ) -> str:
        route.errors.append(error)
        if error.retryable:
            route.health[model.spec] = await cooldowns.failed(model.spec, error)
        await route.restart(model.spec, error)
        return _reason(error)


def _and(policy: RetryPolicy) -> Any:
    def retry_on(exc: BaseException) -> bool:
        return worth_retrying(exc) and policy.retry_on(exc)

    return retry_on
