"""`LLM`: model calls that are priced and written to the ledger, whatever their outcome.

Every call — plain or streamed, answered, failed or cancelled — becomes one ledger row the
moment it ends. A stream cut before the provider reported its usage is charged from an
estimate (input from the prompt, output from the text received) and marked `estimated`.

Inside a workflow, `request` is a journaled step: its response is recorded, and a replay
(after a crash) returns the recorded response without calling the model or writing a second
ledger row.

Every call is under the budgets of its scopes (see `budgets.py`): before it, its worst case is
reserved against each limit (lowering `max_tokens` to what the tightest affords, never below
`min_output_tokens`), or it raises `BudgetExceeded`; its ledger row settles the reservation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..engine.context import current_context
from ..errors import ConfigurationError, StepError
from ..llm import (
    LLMError,
    Message,
    Model,
    Response,
    ResponseBuilder,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolDef,
    Usage,
    estimate_messages,
    estimate_tokens,
    get_model,
    price,
)
from .admission import CallBudget, Receipt, admit, budget_error, emit_events, events_json, refused
from .carrier import HeldRows
from .estimates import prompt_bytes
from .ledger import Ledger
from .limits import BoundBudget, Budget, Mode
from .outcomes import BudgetNotice, Grant, Refusal
from .record import CallRecord, CallStatus
from .scope import Scope

if TYPE_CHECKING:
    from ..engine.context import WorkflowContext

OnDelta = Callable[[StreamEvent], Awaitable[None] | None]


@dataclass(frozen=True)
class CallOptions:
    tools: Sequence[ToolDef] = ()
    max_tokens: int = 1024
    temperature: float | None = None
    stop: Sequence[str] | None = None

    def kwargs(self) -> dict[str, Any]:
        return {
            "tools": self.tools,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stop": self.stop,
        }


@dataclass
class CallNote:
    """What the caller (the router) wants on the row besides what the call itself tells."""

    requested_model: str | None = None
    attempt: int = 1
    fallback_reason: str | None = None


class _Meter:
    """Times one call and collects what it produced, for the ledger row."""

    def __init__(self, model: Model, messages: Sequence[Message], options: CallOptions) -> None:
        self.model = model
        self.messages = messages
        self.options = options
        self.started = time.perf_counter()
        self.ttft_ms: float | None = None
        self.builder = ResponseBuilder(model.provider, model.name)
        self._input_estimate: int | None = None

    def see(self, event: StreamEvent) -> None:
        if self.ttft_ms is None and isinstance(event, TextDelta):
            self.ttft_ms = (time.perf_counter() - self.started) * 1000
        self.builder.add(event)

    def seen(self) -> tuple[int, int]:
        """Input and output tokens so far: the provider's counts, else estimates (input from
        the prompt, as `estimated_usage`; output from the text and tool-call arguments)."""
        builder = self.builder
        if self._input_estimate is None:
            self._input_estimate = estimate_messages(self.messages, self.options.tools)
        output = estimate_tokens(builder.text + builder.arguments)
        known = builder.usage
        return known.input_tokens or self._input_estimate, max(known.output_tokens, output)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def estimated_usage(self, partial_text: str) -> Usage:
        """Usage of a call that ended before the provider's count: what is known, else an
        estimate (input from the prompt, output from the text received)."""
        known = self.builder.usage
        text = partial_text or self.builder.text
        return Usage(
            input_tokens=known.input_tokens or estimate_messages(self.messages, self.options.tools),
            output_tokens=max(known.output_tokens, estimate_tokens(text) if text else 0),
            cache_read_tokens=known.cache_read_tokens,
            cache_write_tokens=known.cache_write_tokens,
        )


class LLM:
    """Metered access to models: `await llm.request("openai:gpt-4o-mini", messages)`.

    Models are named `provider:model` (see `threadline.llm.get_model`); `model_options`
    maps a provider to options for its adapter (`api_key`, `base_url`, ...). `mode` is how
    budgets bound a call's input ("strict": an upper bound, "estimate": a calibrated
    estimate); `min_output_tokens` the fewest output tokens worth a call when a budget lowers
    `max_tokens`; `budget_wait` how long a call waits for money held by calls in flight.
    """

    def __init__(
        self,
        ledger: Ledger | None = None,
        *,
        model_options: dict[str, dict[str, Any]] | None = None,
        mode: Mode = "strict",
        min_output_tokens: int = 256,
        budget_wait: float = 0.0,
    ) -> None:
        self._ledger = ledger
        self._model_options = model_options or {}
        self._models: dict[str, Model] = {}
        self._engine_ledger: Ledger | None = None
        self.mode: Mode = mode
        self.min_output_tokens = min_output_tokens
        self.budget_wait = budget_wait

    @property
    def ledger(self) -> Ledger:
        """The ledger given, or inside a workflow the one on its engine's database."""
        if self._ledger is not None:
            return self._ledger
        ctx = current_context()
        if ctx is None:
            raise ConfigurationError(
                "this LLM has no ledger: pass LLM(Ledger(pool)), or call it in a workflow"
            )
        pool = ctx.engine.pool
        if self._engine_ledger is None or self._engine_ledger.pool is not pool:
            self._engine_ledger = Ledger(pool)
        return self._engine_ledger

    def model(self, model: str | Model) -> Model:
        if isinstance(model, Model):
            return model
        found = self._models.get(model)
        if found is None:
            provider = model.partition(":")[0]
            found = get_model(model, **self._model_options.get(provider, {}))
            self._models[model] = found
        return found

    async def aclose(self) -> None:
        """Write pending ledger rows, then close the models' HTTP clients."""
        for ledger in (self._ledger, self._engine_ledger):
            if ledger is not None:
                await ledger.drain()
        if self._engine_ledger is not None:
            await self._engine_ledger.budgets.close()
        for model in self._models.values():
            await model.aclose()
        self._models.clear()

    # -- calls --------------------------------------------------------------------------------

    def call_budget(
        self,
        scope: Scope,
        budget: Budget | BoundBudget | None = None,
        *,
        mode: Mode | None = None,
        ctx: WorkflowContext | None = None,
    ) -> CallBudget:
        """The limits a call in this scope is under (with this LLM's mode and wait)."""
        return CallBudget.of(scope, budget, ctx=ctx, mode=mode or self.mode, wait=self.budget_wait)

    async def request(
        self,
        model: str | Model,
        messages: Sequence[Message],
        *,
        scope: Scope | None = None,
        tools: Sequence[ToolDef] = (),
        max_tokens: int = 1024,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        on_delta: OnDelta | None = None,
        note: CallNote | None = None,
        budget: Budget | BoundBudget | None = None,
        mode: Mode | None = None,
    ) -> Response:
        """One answer. With `on_delta` the call streams and each event is passed on as it
        arrives. Inside a workflow this is a journaled step named `llm:<provider:model>`.
        `budget` adds limits for this call (`usd`: the call itself; `per_*`: its scopes)."""
        target = self.model(model)
        options = CallOptions(tools, max_tokens, temperature, stop)
        scope = scope or Scope()
        ledger = self.ledger  # resolved here: inside a step body there is no workflow context
        ctx = current_context()
        if ctx is None:
            plan = self.call_budget(scope, budget, mode=mode)
            response, _ = await self._budgeted(
                target, messages, options, scope, plan, on_delta, note, ledger
            )
            return response
        step_scope = scope.with_(run_id=scope.run_id or ctx.run_id, step_no=ctx.step_no + 1)
        plan = self.call_budget(step_scope, budget, mode=mode, ctx=ctx)

        held = HeldRows(ledger)  # the call's row commits with the step's record

        async def step_body() -> dict[str, Any]:
            response, notices = await self._budgeted(
                target,
                messages,
                options,
                step_scope,
                plan,
                on_delta,
                note,
                ledger,
                durable=True,
                hold=held,
            )
            return response.to_json() | {"events": events_json(notices)}

        try:
            recorded: dict[str, Any] = await ctx.step(
                step_body, name=f"llm:{target.spec}", record_with=held
            )
        except StepError as exc:
            exceeded = budget_error(exc)
            if exceeded is None:
                raise
            await ctx.emit("budget.exceeded", exceeded.to_json())
            raise exceeded from exc
        # A replay finds the notices of the call's settlement in its record; a first run hears
        # them once the record and the call's row are committed.
        events = [*recorded.get("events", ()), *events_json(await held.notices())]
        await emit_events(ctx, events)
        return Response.from_json(recorded)

    async def _budgeted(
        self,
        model: Model,
        messages: Sequence[Message],
        options: CallOptions,
        scope: Scope,
        plan: CallBudget,
        on_delta: OnDelta | None,
        note: CallNote | None,
        ledger: Ledger,
        durable: bool = False,
        hold: HeldRows | None = None,
    ) -> tuple[Response, tuple[BudgetNotice, ...]]:
        """Admit the call under its budgets, make it, and (if `durable`) await its settlement
        (`hold`: takes the row to commit with the step's record instead, see `call`)."""
        grant = await self.admit(
            model, messages, options, scope, plan, note, ledger, streams=on_delta is not None
        )
        if isinstance(grant, Refusal):
            raise refused(grant, model.spec)
        receipt = Receipt()
        response = await self.call(
            model, messages, options, scope, on_delta, note, ledger, durable, grant, receipt, hold
        )
        return response, (await receipt.notices() if durable else ())

    async def admit(
        self,
        model: Model,
        messages: Sequence[Message],
        options: CallOptions,
        scope: Scope,
        plan: CallBudget,
        note: CallNote | None = None,
        ledger: Ledger | None = None,
        *,
        min_tokens: int | None = None,
        streams: bool = False,
    ) -> Grant | Refusal:
        """Reserve a call's worst case under `plan`, with at least `min_tokens` (default:
        `min_output_tokens`) of output (see `admission.admit`). `streams`: the call streams
        and reports its progress (see `Budgets.watch`) from the start."""
        ledger = ledger or self.ledger
        note = note or CallNote()
        return await admit(
            ledger.budgets,
            plan,
            model,
            messages,
            options.tools,
            max_tokens=options.max_tokens,
            min_tokens=min_tokens or self.min_output_tokens,
            scope=scope,
            requested_model=note.requested_model or model.spec,
            attempt=note.attempt,
            fallback_reason=note.fallback_reason,
            overrides=ledger.overrides,
            streams=streams,
        )

    async def stream(
        self,
        model: str | Model,
        messages: Sequence[Message],
        *,
        scope: Scope | None = None,
        tools: Sequence[ToolDef] = (),
        max_tokens: int = 1024,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        note: CallNote | None = None,
        budget: Budget | BoundBudget | None = None,
        mode: Mode | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The answer's events as they arrive (the last is `StreamEnd`). Not journaled: inside
        a workflow use `request(..., on_delta=...)`."""
        if current_context() is not None:
            raise ConfigurationError(
                "LLM.stream is not durable; inside a workflow use request(..., on_delta=...)"
            )
        target = self.model(model)
        options = CallOptions(tools, max_tokens, temperature, stop)
        ledger = self.ledger
        scope = scope or Scope()
        plan = self.call_budget(scope, budget, mode=mode)
        grant = await self.admit(target, messages, options, scope, plan, note, ledger, streams=True)
        if isinstance(grant, Refusal):
            raise refused(grant, target.spec)
        options = replace(options, max_tokens=grant.max_tokens)
        meter = _Meter(target, messages, options)
        status: CallStatus = "cancelled"
        error: LLMError | None = None
        if grant.reservation_id is not None:
            ledger.budgets.watch(grant.reservation_id, meter.seen)
        try:
            async for event in target.stream(messages, **options.kwargs()):
                meter.see(event)
                yield event
            status = "ok"
        except LLMError as exc:
            status, error = "error", exc
            raise
        finally:
            if grant.reservation_id is not None:
                ledger.budgets.unwatch(grant.reservation_id)
            ledger.submit(self._row(ledger, meter, scope, note, status, error, grant))

    async def call(
        self,
        model: Model,
        messages: Sequence[Message],
        options: CallOptions,
        scope: Scope,
        on_delta: OnDelta | None = None,
        note: CallNote | None = None,
        ledger: Ledger | None = None,
        durable: bool = False,
        grant: Grant | None = None,
        receipt: Receipt | None = None,
        hold: HeldRows | None = None,
    ) -> Response:
        """One metered call, not journaled (the router and `request` build on it).

        Its ledger row is group-committed after it returns; with `durable` the call returns
        only once the row is committed (a workflow step does, so that a recorded step always
        has its row). With a `grant` (see `admit`) the call keeps to its `max_tokens` and its
        row settles its reservation; `receipt` receives the row's write. `hold` takes the row
        instead of the writer when it goes with the step's record (see
        `threadline.ledger.carrier`): `durable` then has nothing to wait for."""
        ledger = ledger or self.ledger
        if grant is not None:
            options = replace(options, max_tokens=grant.max_tokens)
        meter = _Meter(model, messages, options)
        status: CallStatus = "cancelled"
        error: LLMError | None = None
        watched = grant.reservation_id if grant is not None and on_delta is not None else None
        if watched is not None:  # a crash mid-stream is then charged what it streamed
            ledger.budgets.watch(watched, meter.seen)
        try:
            if on_delta is None:
                response = await model.request(messages, **options.kwargs())
                meter.builder.add(StreamEnd(response.stop_reason, response.usage, response.model))
            else:
                async for event in model.stream(messages, **options.kwargs()):
                    meter.see(event)
                    result = on_delta(event)
                    if result is not None:
                        await result
                response = meter.builder.build()
            status = "ok"
            return response
        except LLMError as exc:
            status, error = "error", exc
            raise
        finally:
            if watched is not None:
                ledger.budgets.unwatch(watched)
            row = self._row(ledger, meter, scope, note, status, error, grant)
            if hold is not None and hold.takes(row):
                hold.hold(row)
            else:
                written = ledger.submit(row, receipt.take if receipt is not None else None)
                if receipt is not None:
                    receipt.written = written
                if durable:
                    await asyncio.shield(written)

    # -- the ledger row -----------------------------------------------------------------------

    def _row(
        self,
        ledger: Ledger,
        meter: _Meter,
        scope: Scope,
        note: CallNote | None,
        status: CallStatus,
        error: LLMError | None,
        grant: Grant | None = None,
    ) -> CallRecord:
        model = meter.model
        end = meter.builder.end
        if end is not None:
            usage, estimated = end.usage, False
        elif error is not None and not (error.partial_text or meter.builder.text):
            usage, estimated = meter.builder.usage, False  # refused before any output
        else:
            usage, estimated = meter.estimated_usage(error.partial_text if error else ""), True
        used_model = end.model if end is not None and end.model else model.name
        cost = price(model.provider, used_model, usage, overrides=ledger.overrides)
        note = note or CallNote()
        return CallRecord(
            provider=model.provider,
            requested_model=note.requested_model or model.spec,
            model=used_model,
            status=status,
            latency_ms=meter.elapsed_ms(),
            ttft_ms=meter.ttft_ms,
            scope=scope,
            attempt=note.attempt,
            stop_reason=end.stop_reason if end is not None else None,
            error_code=error.code if error is not None else None,
            fallback_reason=note.fallback_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_usd=cost.total_usd,
            priced=cost.priced,
            estimated=estimated,
            reservation_id=grant.reservation_id if grant else None,
            reserved_usd=grant.amount_usd if grant and grant.reservation_id else None,
            input_bytes=prompt_bytes(meter.messages, meter.options.tools),
        )
