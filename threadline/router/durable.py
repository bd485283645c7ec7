"""`call_model`: one call of a model stack, as a journaled step inside a workflow.

The step is written here once, whatever the stack (`MeteredModel`, a `FallbackModel` of them,
or any `Model` wrapping those). Inside a workflow the whole call — every model a fallback
chain tried — is one step (ADR 0003): its record holds the answer and the notices the call
told, so a replay after a crash returns the recorded answer, tells the same notices, and
buys nothing. The rows of the step's calls commit with its record (see
`threadline.ledger.carrier`); the budget notices that settlement causes are told after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..engine import RetryPolicy, current_context
from ..engine.retry import NO_RETRY
from ..errors import StepError
from ..ledger import Ledger, Metering
from ..ledger.admission import budget_error, emit_events, events_json
from ..ledger.carrier import HeldRows
from ..llm import CallOptions, Message, Model, Notice, Response, Restart
from ..llm.model import closing
from .route import Answer, EventHook, OnRoutedDelta, RoutedResponse, RouteSummary, call_hook

__all__ = ["call_model"]


async def call_model(
    model: Model,
    messages: Sequence[Message],
    options: CallOptions,
    *,
    ledger: Ledger,
    on_delta: OnRoutedDelta | None = None,
    hooks: Sequence[EventHook] = (),
    name: str | None = None,
    retry: RetryPolicy = NO_RETRY,
) -> Response:
    """One answer of `model`. With `on_delta` the call streams and each event (and a
    `Restart`) is passed on as it arrives; `hooks` hear every notice (fallbacks, capped
    output, budget thresholds) and restart. `ledger`: where the stack's metered models
    write when they have no ledger of their own. Inside a workflow: a step named `name`
    (`llm:<provider:model>` by default), retried by `retry`."""
    metering = options.get(Metering) or Metering()
    metering = replace(metering, ledger=metering.ledger or ledger)
    ctx = current_context()
    if ctx is None:
        response, _ = await _run(model, messages, options.with_(metering), on_delta, hooks)
        return response
    scope = metering.scope
    held = HeldRows(ledger)  # the calls' rows commit with the step's record
    in_step = replace(
        metering,
        scope=scope.with_(run_id=scope.run_id or ctx.run_id, step_no=ctx.step_no + 1),
        workflow=ctx,
        hold=held,
    )

    async def body() -> dict[str, Any]:
        response, told = await _run(model, messages, options.with_(in_step), on_delta, hooks)
        return {"response": response.to_json(), "events": told}

    try:
        recorded: dict[str, Any] = await ctx.step(
            body, name=name or f"llm:{model.spec}", retry=retry, record_with=held
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
    await emit_events(ctx, [*recorded.get("events", ()), *events_json(notices)])
    # A metered call's record written before its step was this one kept the answer's fields
    # beside its events: both read the same.
    answer = recorded.get("response", recorded)
    return RoutedResponse.from_json(answer) if "route" in answer else Response.from_json(answer)


async def _run(
    model: Model,
    messages: Sequence[Message],
    options: CallOptions,
    on_delta: OnRoutedDelta | None,
    hooks: Sequence[EventHook],
) -> tuple[Response, list[dict[str, Any]]]:
    """Make the call: its answer and the notices it told (for the run's log)."""
    told: list[dict[str, Any]] = []

    async def hear(event: Any) -> None:
        for hook in hooks:
            await call_hook(hook, event)

    answer = Answer(model.provider, model.name)

    async def pump() -> None:
        # A consumer that stops early (a cancelled turn) ends the call, and writes its row,
        # now.
        async with closing(
            model._events(messages, options, streams=on_delta is not None)
        ) as events:
            async for event in events:
                answer.add(event)
                if isinstance(event, Notice):
                    if not isinstance(event.event, RouteSummary):  # the answer says that one
                        told.append(event.to_json())
                        await hear(event.event)
                    continue
                if on_delta is None:
                    continue
                result = on_delta(event)
                if result is not None and inspect.isawaitable(result):
                    await result
                if isinstance(event, Restart):  # the stream's consumer owns it: not logged
                    await hear(event)

    # The stream in a task of its own: each piece wakes this short stack, not every frame of
    # the caller's (the turn, the workflow step) above it.
    task = asyncio.get_running_loop().create_task(pump())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise
    return answer.build(), told
