"""What one metered call produced, and its ledger row: tokens (the provider's counts, else
estimates), timing, status, and its price, computed once."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..llm import (
    CallEvent,
    CallOptions,
    LLMError,
    Message,
    Model,
    ResponseBuilder,
    TextDelta,
    Usage,
    estimate_messages,
    estimate_tokens,
    price,
)
from ..llm.pricing import PriceOverrides
from .estimates import prompt_bytes
from .outcomes import Grant
from .record import CallRecord, CallStatus
from .scope import Scope

__all__ = ["CallNote", "Meter"]


@dataclass(frozen=True)
class CallNote:
    """What the caller (a fallback chain) wants on the row besides what the call itself
    tells: the model asked for, the attempt's number, why the previous model was left."""

    requested_model: str | None = None
    attempt: int = 1
    fallback_reason: str | None = None


class Meter:
    """Times one call and collects what it produced, for the ledger row."""

    def __init__(
        self,
        model: Model,
        messages: Sequence[Message],
        options: CallOptions,
        *,
        times_first_token: bool = True,
    ) -> None:
        self.model = model
        self.times_first_token = times_first_token  # a plain call has no first token
        self.messages = messages
        self.options = options
        self.started = time.perf_counter()
        self.ttft_ms: float | None = None
        self.builder = ResponseBuilder(model.provider, model.name)
        self._input_estimate: int | None = None

    def see(self, event: CallEvent) -> None:
        if self.ttft_ms is None and self.times_first_token and isinstance(event, TextDelta):
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

    def row(
        self,
        scope: Scope,
        note: CallNote,
        status: CallStatus,
        error: LLMError | None,
        grant: Grant | None,
        overrides: PriceOverrides | None,
    ) -> CallRecord:
        """The call's ledger row, priced (the one price of the call: the response carries
        the same `cost_usd`)."""
        model = self.model
        end = self.builder.end
        if end is not None:
            usage, estimated = end.usage, False
        elif error is not None and not (error.partial_text or self.builder.text):
            usage, estimated = self.builder.usage, False  # refused before any output
        else:
            usage, estimated = self.estimated_usage(error.partial_text if error else ""), True
        used_model = end.model if end is not None and end.model else model.name
        cost = price(model.provider, used_model, usage, overrides=overrides)
        return CallRecord(
            provider=model.provider,
            requested_model=note.requested_model or model.spec,
            model=used_model,
            status=status,
            latency_ms=self.elapsed_ms(),
            ttft_ms=self.ttft_ms,
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
            input_bytes=prompt_bytes(self.messages, self.options.tools),
        )
