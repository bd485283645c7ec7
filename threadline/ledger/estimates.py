"""What a call can cost at worst, before it is made.

Output is bounded by `max_tokens`. Input is bounded two ways:

- **strict**: `tokens.input_bound`: the model's own count where threadline has its tokenizer
  (the demo model; OpenAI models with `tiktoken`), else `tokens.upper_bound_messages` (no
  tokenizer yields more tokens than UTF-8 bytes, plus fixed overheads); never more than the
  model's context window, since a provider refuses a longer prompt. Recorded spend can then
  never pass a limit.
- **estimate**: the prompt's bytes divided by the bytes per token this model averaged over its
  recent calls in the ledger (each row records its prompt's size); `estimate_messages` until
  the model has a history. Tighter, so more calls fit, but a call can cost more than it
  reserved: settlement records the overshoot.

Both are priced at the model's worst-case rates (`pricing.prices_per_token`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from ..llm import Message, Model, ToolDef, estimate_messages, prices_per_token
from ..llm.pricing import PriceOverrides
from ..llm.tokens import input_bound
from .limits import Mode
from .queries import CALIBRATE

__all__ = ["Calibration", "CallCost", "call_cost", "prompt_bytes"]

# Rows a model's bytes-per-token average is taken over, and how long a process trusts it.
CALIBRATION_ROWS = 500
CALIBRATION_TTL_S = 60.0


def prompt_bytes(messages: Sequence[Message], tools: Sequence[ToolDef] = ()) -> int:
    """The UTF-8 size of what a request sends: contents, tool calls, tool definitions."""
    size = 0
    for m in messages:
        size += len(m.content.encode("utf-8", errors="surrogatepass"))
        for c in m.tool_calls:
            size += len((c.id + c.name + json.dumps(dict(c.arguments))).encode())
    for t in tools:
        size += len(json.dumps(t.to_json(), ensure_ascii=False).encode())
    return size


class Calibration:
    """Each model's bytes per token, learned from its recorded calls (cached per process)."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = CALIBRATION_TTL_S) -> None:
        self._pool = pool
        self._ttl = ttl
        self._known: dict[str, tuple[float, float | None]] = {}

    async def bytes_per_token(self, provider: str, model: str) -> float | None:
        key = f"{provider}:{model}"
        cached = self._known.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        pattern = model.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%"
        async with self._pool.acquire() as conn:
            ratio: float | None = await conn.fetchval(
                CALIBRATE, provider, model, pattern, CALIBRATION_ROWS
            )
        self._known[key] = (time.monotonic(), ratio)
        return ratio

    async def estimate(
        self, model: Model, messages: Sequence[Message], tools: Sequence[ToolDef] = ()
    ) -> int:
        """The input tokens this model is likely to count for this prompt."""
        ratio = await self.bytes_per_token(model.provider, model.name)
        if not ratio:
            return estimate_messages(messages, tools)
        return max(1, math.ceil(prompt_bytes(messages, tools) / ratio - 1e-6))  # float noise


@dataclass(frozen=True)
class CallCost:
    """A call's worst case: its input (`input_tokens`, costing `input_usd`) and the price of
    each output token. `priced` is False for a model without a known price."""

    input_tokens: int
    input_usd: Decimal
    per_output_token_usd: Decimal
    priced: bool = True

    @property
    def free(self) -> bool:
        return self.priced and self.input_usd == 0 and self.per_output_token_usd == 0

    def worst_usd(self, max_tokens: int) -> Decimal:
        return self.input_usd + self.per_output_token_usd * max_tokens

    def affordable_tokens(self, usd: Decimal) -> int:
        """The most output tokens `usd` pays for after the input (-1: not even the input)."""
        if usd < self.input_usd:
            return -1
        if self.per_output_token_usd == 0:
            return 2**31 - 1
        return int((usd - self.input_usd) / self.per_output_token_usd)


async def call_cost(
    model: Model,
    messages: Sequence[Message],
    tools: Sequence[ToolDef],
    mode: Mode,
    calibration: Calibration,
    overrides: PriceOverrides | None = None,
) -> CallCost:
    """The worst case of calling `model` with this prompt, in `mode`."""
    if mode == "strict":
        tokens = min(input_bound(model.provider, model.name, messages, tools), model.context_window)
    else:
        tokens = await calibration.estimate(model, messages, tools)
    rates = prices_per_token(model.provider, model.name, overrides=overrides)
    if rates is None:
        return CallCost(tokens, Decimal(0), Decimal(0), priced=False)
    return CallCost(tokens, rates[0] * tokens, rates[1])
