"""One routed call in progress: what it asked for, what happened to each model it considered,
and the events it owes its caller; and, at the end, the error if no model answered."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import ThreadlineError
from ..ledger import BudgetNotice, CallBudget, CallOptions, Refusal, Scope
from ..ledger.admission import refused
from ..ledger.carrier import HeldRows
from ..llm import (
    ContextWindowExceeded,
    LLMError,
    Message,
    Response,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
)
from .cooldowns import ModelHealth
from .events import Fallback, NoModelAvailable, Restart, RouterEvent
from .policy import ModelPolicy

__all__ = ["EventHook", "OnRoutedDelta", "Route", "RoutedResponse"]

OnRoutedDelta = Callable[[StreamEvent | Restart], Awaitable[None] | None]
EventHook = Callable[[RouterEvent], Awaitable[None] | None]


async def call_hook(hook: Callable[[Any], Awaitable[None] | None] | None, event: Any) -> None:
    if hook is not None:
        result = hook(event)
        if inspect.isawaitable(result):
            await result


@dataclass(frozen=True)
class RoutedResponse(Response):
    """A `Response`, with how the router got it: the model asked for, the one of the chain
    that answered (`used_model`), the calls made (`attempts`), the `max_tokens` it was given
    (lower than asked when a budget said so) and the fallbacks on the way."""

    requested_model: str = ""
    used_model: str = ""
    attempts: int = 1
    max_tokens: int = 0
    fallbacks: tuple[Fallback, ...] = ()

    @classmethod
    def of(cls, response: Response, **route: Any) -> RoutedResponse:
        return cls(
            response.text,
            response.tool_calls,
            response.usage,
            response.stop_reason,
            response.model,
            response.provider,
            **route,
        )

    def to_json(self) -> dict[str, Any]:
        route = {
            "requested_model": self.requested_model,
            "used_model": self.used_model,
            "attempts": self.attempts,
            "max_tokens": self.max_tokens,
            "fallbacks": [f.to_json() for f in self.fallbacks],
        }
        return super().to_json() | {"route": route}

    @classmethod
    def from_json(cls, data: Any) -> RoutedResponse:
        route = dict(data["route"])
        route["fallbacks"] = tuple(Fallback.from_json(f) for f in route["fallbacks"])
        return cls.of(Response.from_json(data), **route)


@dataclass
class Route:
    """The state of one routed call (a fresh one for every execution of its step)."""

    policy: ModelPolicy
    messages: Sequence[Message]
    options: CallOptions
    scope: Scope
    plan: CallBudget
    min_tokens: int
    on_delta: OnRoutedDelta | None = None
    hooks: Sequence[EventHook] = ()
    attempts: int = 0
    reason: str | None = None  # why the previous model was left
    delivered: str = ""  # what the current attempt has streamed to the caller
    fallbacks: list[Fallback] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # for the run's event log
    left: dict[str, str] = field(default_factory=dict)  # model -> why it was left
    refusals: list[tuple[str, Refusal]] = field(default_factory=list)
    errors: list[LLMError] = field(default_factory=list)
    health: dict[str, ModelHealth] = field(default_factory=dict)
    # Inside a step: takes the rows of calls under no reservation, to commit with its record.
    hold: HeldRows | None = None

    # -- events -------------------------------------------------------------------------------

    async def tell(self, event: RouterEvent, durable: bool = True) -> None:
        """Pass an event to the hooks now; `durable` ones also go to the run's event log."""
        if durable:
            self.events.append({"kind": event.kind, "data": event.to_json()})
        for hook in self.hooks:
            await call_hook(hook, event)

    async def notices(self, notices: Sequence[BudgetNotice]) -> None:
        for notice in notices:
            await self.tell(notice)

    def relay(self, event: StreamEvent) -> Awaitable[None] | None:
        """The caller's `on_delta`, noting what output has gone out. Returns what the hook
        returns when that is awaitable (the metered call awaits it): a synchronous hook costs
        no coroutine per token."""
        if isinstance(event, TextDelta):
            self.delivered += event.text
        elif isinstance(event, ToolCallDelta):
            self.delivered += event.arguments_delta or " "
        if self.on_delta is None:
            return None
        result = self.on_delta(event)
        return None if result is None or not inspect.isawaitable(result) else result

    async def restart(self, model: str, error: LLMError) -> None:
        """After a failure: if output had gone out, tell the caller to discard it."""
        if self.delivered:
            event = Restart(model, error.code, self.delivered)
            await call_hook(self.on_delta, event)
            await self.tell(event, durable=False)  # the stream's consumer owns this one
        self.delivered = ""

    async def leave(self, model: str, next_model: str | None, reason: str) -> None:
        """Move on from `model` because of `reason`."""
        self.left[model] = reason
        self.reason = reason
        if next_model is not None:
            fallback = Fallback(model, next_model, reason)
            self.fallbacks.append(fallback)
            await self.tell(fallback)

    # -- the end ------------------------------------------------------------------------------

    def answer(self, response: Response, model: str, max_tokens: int) -> RoutedResponse:
        return RoutedResponse.of(
            response,
            requested_model=self.policy.primary,
            used_model=model,
            attempts=self.attempts,
            max_tokens=max_tokens,
            fallbacks=tuple(self.fallbacks),
        )

    def exhausted(self) -> ThreadlineError:
        """The error for a chain where no model answered (see docs/budgets.md)."""
        transient = [m for m, r in self.left.items() if r not in _FINAL]
        if transient:
            error = NoModelAvailable(dict(self.left), retry_after=self._first_cooldown_end())
            if self.errors:
                error.__cause__ = self.errors[-1]
            return error
        budget = [(m, r) for m, r in self.refusals if r.reason == "budget"]
        if budget:
            model, refusal = min(budget, key=lambda found: found[1].needed_usd)
            return refused(refusal, model)
        if self.refusals:
            return refused(self.refusals[-1][1], self.refusals[-1][0])
        return ContextWindowExceeded(
            f"the prompt fits the context window of none of {', '.join(self.policy.specs)}"
        )

    def _first_cooldown_end(self) -> float | None:
        ends = [h.until for h in self.health.values() if h.cooling]
        if not ends:
            return None
        return max(0.0, (min(ends) - datetime.now(UTC)).total_seconds())


# Reasons that waiting would not change.
_FINAL = frozenset({"budget", "unpriced", "context_window"})
