"""One ledger row: what a single LLM call asked for, got, and cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from .queries import INSERT_CALL as INSERT
from .scope import Scope

# `INSERT` (a ledger row) is the statement `insert_args` fills; the writer takes both here.
__all__ = ["INSERT", "CallRecord", "CallStatus", "insert_args"]

CallStatus = Literal["ok", "error", "cancelled", "cached"]


@dataclass
class CallRecord:
    provider: str
    requested_model: str
    model: str
    status: CallStatus
    latency_ms: float
    scope: Scope = field(default_factory=Scope)
    attempt: int = 1
    stop_reason: str | None = None
    error_code: str | None = None
    fallback_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal | None = None  # None: the model has no known price ("unpriced")
    saved_usd: Decimal = Decimal(0)
    priced: bool = True
    estimated: bool = False  # usage estimated (a stream cut before the provider reported it)
    ttft_ms: float | None = None
    reservation_id: int | None = None  # the budget reservation this call settles
    reserved_usd: Decimal | None = None  # what that reservation held
    input_bytes: int | None = None  # the prompt's UTF-8 size (estimate mode learns from it)


def insert_args(r: CallRecord) -> tuple[object, ...]:
    """The parameters of `INSERT` for this row."""
    s = r.scope
    return (
        s.tenant,
        s.user,
        s.session,
        s.turn,
        s.run_id,
        s.step_no,
        s.agent,
        r.provider,
        r.requested_model,
        r.model,
        r.attempt,
        r.status,
        r.stop_reason,
        r.error_code,
        r.fallback_reason,
        r.input_tokens,
        r.output_tokens,
        r.cache_read_tokens,
        r.cache_write_tokens,
        r.reasoning_tokens,
        r.cost_usd,
        r.saved_usd,
        r.priced,
        r.estimated,
        r.latency_ms,
        r.ttft_ms,
        r.reservation_id,
        r.reserved_usd,
        r.input_bytes,
    )
