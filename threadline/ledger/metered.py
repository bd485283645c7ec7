"""`LLM`: model calls that are priced and written to the ledger, whatever their outcome.

Every call — plain or streamed, answered, failed or cancelled — becomes one ledger row the
moment it ends. A stream cut before the provider reported its usage is charged from an
estimate (input from the prompt, output from the text received) and marked `estimated`.

Inside a workflow, `request` is a journaled step: its response is recorded, and a replay
(after a crash) returns the recorded response without calling the model or writing a second
ledger row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.context import current_context
from ..errors import ConfigurationError
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
from .ledger import Ledger
from .record import CallRecord, CallStatus
from .scope import Scope

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

    def see(self, event: StreamEvent) -> None:
        if self.ttft_ms is None and isinstance(event, TextDelta):
            self.ttft_ms = (time.perf_counter() - self.started) * 1000
        self.builder.add(event)

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
    maps a provider to options for its adapter (`api_key`, `base_url`, ...).
    """

    def __init__(
        self,
        ledger: Ledger | None = None,
        *,
        model_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self._ledger = ledger
        self._model_options = model_options or {}
        self._models: dict[str, Model] = {}
        self._engine_ledger: Ledger | None = None

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
        for model in self._models.values():
            await model.aclose()
        self._models.clear()

    # -- calls --------------------------------------------------------------------------------

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
    ) -> Response:
        """One answer. With `on_delta` the call streams and each event is passed on as it
        arrives. Inside a workflow this is a journaled step named `llm:<provider:model>`."""
        target = self.model(model)
        options = CallOptions(tools, max_tokens, temperature, stop)
        scope = scope or Scope()
        ledger = self.ledger  # resolved here: inside a step body there is no workflow context
        ctx = current_context()
        if ctx is None:
            return await self.call(target, messages, options, scope, on_delta, note, ledger)
        step_scope = scope.with_(run_id=scope.run_id or ctx.run_id, step_no=ctx.step_no + 1)

        async def step_body() -> dict[str, Any]:
            response = await self.call(
                target, messages, options, step_scope, on_delta, note, ledger, durable=True
            )
            return response.to_json()

        recorded: dict[str, Any] = await ctx.step(step_body, name=f"llm:{target.spec}")
        return Response.from_json(recorded)

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
        meter = _Meter(target, messages, options)
        status: CallStatus = "cancelled"
        error: LLMError | None = None
        try:
            async for event in target.stream(messages, **options.kwargs()):
                meter.see(event)
                yield event
            status = "ok"
        except LLMError as exc:
            status, error = "error", exc
            raise
        finally:
            ledger.submit(self._row(ledger, meter, scope or Scope(), note, status, error))

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
    ) -> Response:
        """One metered call, not journaled (the router and `request` build on it).

        Its ledger row is group-committed after it returns; with `durable` the call returns
        only once the row is committed (a workflow step does, so that a recorded step always
        has its row)."""
        ledger = ledger or self.ledger
        meter = _Meter(model, messages, options)
        status: CallStatus = "cancelled"
        error: LLMError | None = None
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
            written = ledger.submit(self._row(ledger, meter, scope, note, status, error))
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
        )
