"""The budgets side of one call: which limits it is under, and whether it may go ahead with how
many output tokens. `MeteredModel` uses it before each call, in a fallback chain for each
model it tries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, StepError, ThreadlineError
from ..llm import Message, Model, ToolDef
from ..llm.pricing import PriceOverrides
from .budgets import Budgets
from .estimates import CallCost, call_cost
from .limits import (
    BoundBudget,
    Budget,
    BudgetExceeded,
    Counter,
    Mode,
    ScopeRef,
    counters_for,
    declared_budget,
    today,
)
from .outcomes import BudgetNotice, CallInfo, Grant, Refusal, events_json
from .scope import Scope

if TYPE_CHECKING:
    from ..engine.context import WorkflowContext

__all__ = [
    "CallBudget",
    "Receipt",
    "admit",
    "budget_error",
    "emit_events",
    "events_json",
    "refused",
]

MODES: tuple[Mode, ...] = ("strict", "estimate")


@dataclass(frozen=True)
class CallBudget:
    """The limits a call is under, fixed once before it (and kept across fallbacks): the
    counters of its scopes, a per-call cap (`Budget(usd=...)` passed to the call), the mode,
    and how long to wait for money held by calls in flight.

    `budget` is one passed to the call: a plain `Budget` caps the call itself with `usd`; a
    bound one (`Budget.bind`) counts `usd` and `daily` on the scopes it names. Inside a
    workflow, the workflow's declared `Budget` counts `usd` per run and `daily` per workflow.
    """

    counters: tuple[Counter, ...]
    call_cap_usd: Decimal | None = None
    mode: Mode = "strict"
    wait: float = 0.0

    @classmethod
    def of(
        cls,
        scope: Scope,
        budget: Budget | BoundBudget | None = None,
        *,
        ctx: WorkflowContext | None = None,
        mode: Mode = "strict",
        wait: float = 0.0,
    ) -> CallBudget:
        if mode not in MODES:
            raise ConfigurationError(f"budget mode must be 'strict' or 'estimate', got {mode!r}")
        declared: list[Counter] = []
        workflow = ctx.workflow if ctx is not None else None
        if ctx is not None and workflow is not None:
            registered = ctx.engine.registry.get(workflow)
            on_workflow = declared_budget(registered.fn) if registered is not None else None
            if on_workflow is not None:
                run = ScopeRef("run", scope.run_id) if scope.run_id else None
                declared += on_workflow.counters(
                    scope, whole=run, daily_of=ScopeRef("workflow", workflow), day=today()
                )
        cap: Decimal | None = None
        if isinstance(budget, BoundBudget):
            declared += budget.counters(scope, day=today())
        elif budget is not None:  # passed to one call: its `usd` caps that call
            declared += budget.counters(scope, whole=None, daily_of=None, day=today())
            cap = budget.limit("usd")
        counters = counters_for(scope, workflow=workflow, declared=declared)
        return cls(tuple(counters), cap, mode, wait)


def _ceil(value: Decimal) -> Decimal:
    return value.quantize(Decimal("1e-10"), rounding=ROUND_CEILING)


def _capped(cap: Decimal, cost: CallCost, max_tokens: int, min_tokens: int) -> int | Refusal:
    """The output tokens a per-call cap leaves, or its refusal."""
    affordable = cost.affordable_tokens(cap) if cost.priced else -1
    if affordable < min_tokens:
        reason = "budget" if cost.priced else "unpriced"
        needed = _ceil(cost.worst_usd(min_tokens))
        return Refusal("call", "total", cap, Decimal(0), Decimal(0), needed, reason)
    return min(max_tokens, affordable)


async def admit(
    budgets: Budgets,
    plan: CallBudget,
    model: Model,
    messages: Sequence[Message],
    tools: Sequence[ToolDef],
    *,
    max_tokens: int,
    min_tokens: int,
    scope: Scope,
    requested_model: str,
    attempt: int = 1,
    fallback_reason: str | None = None,
    overrides: PriceOverrides | None = None,
    streams: bool = False,
) -> Grant | Refusal:
    """Reserve the call's worst case against its limits, or say why it does not fit. A call
    known to be under no limit is admitted at once, without pricing it or asking the database."""
    if plan.call_cap_usd is None and budgets.unlimited(plan.counters):
        return Grant(max_tokens)
    cost = await call_cost(model, messages, tools, plan.mode, budgets.calibration, overrides)
    min_tokens = max(1, min(min_tokens, max_tokens))
    if plan.call_cap_usd is not None:
        capped = _capped(plan.call_cap_usd, cost, max_tokens, min_tokens)
        if isinstance(capped, Refusal):
            return capped
        max_tokens = capped
    if not cost.priced:
        if await budgets.applies(plan.counters):
            zero = Decimal(0)
            return Refusal("", "", zero, zero, zero, zero, "unpriced")
        return Grant(max_tokens)
    if cost.free:
        return Grant(max_tokens)
    return await budgets.reserve(
        plan.counters,
        fixed_usd=cost.input_usd,
        per_token_usd=cost.per_output_token_usd,
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        call=CallInfo(
            provider=model.provider,
            model=model.name,
            requested_model=requested_model,
            scope=scope.to_json(),
            input_tokens=cost.input_tokens,
            mode=plan.mode,
            attempt=attempt,
            fallback_reason=fallback_reason,
            streams=streams,
        ),
        wait=plan.wait,
    )


def refused(refusal: Refusal, model: str) -> ThreadlineError:
    """The error for a call nothing could admit: `BudgetExceeded`, or a configuration error
    for a model without a price under a limit (its cost cannot be bounded)."""
    if refusal.reason == "unpriced":
        return ConfigurationError(
            f"{model} has no known price, so a call under a budget cannot be bounded: "
            "give it a price (a THREADLINE_PRICES override) or call it without a budget"
        )
    return BudgetExceeded(
        refusal.scope,
        refusal.limit_usd,
        refusal.spent_usd,
        refusal.needed_usd,
        reserved_usd=refusal.reserved_usd,
        bucket=refusal.bucket,
        model=model,
    )


def budget_error(exc: StepError) -> BudgetExceeded | None:
    """The `BudgetExceeded` a workflow step failed with (rebuilt from its journal record)."""
    if exc.error_type != BudgetExceeded.__name__:
        return None
    return BudgetExceeded.from_message(exc.message)


@dataclass
class Receipt:
    """What a metered call leaves behind: its ledger row's write and, once that is committed,
    the budget notices its settlement caused."""

    written: asyncio.Future[None] | None = None
    found: tuple[BudgetNotice, ...] = ()

    def take(self, notices: Sequence[BudgetNotice]) -> None:
        self.found = tuple(notices)

    async def notices(self) -> tuple[BudgetNotice, ...]:
        if self.written is not None:
            await asyncio.shield(self.written)
        return self.found


async def emit_events(ctx: WorkflowContext, events: Sequence[dict[str, Any]]) -> None:
    """Emit events a step recorded, after it: on a replay, the same ones in the same order."""
    for event in events:
        await ctx.emit(str(event["kind"]), event["data"])
