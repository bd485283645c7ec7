"""One routed call in progress: what it asked for, what happened to each model it considered,
and, at the end, how it was answered (`RouteSummary`, `RoutedResponse`) or the error if no
model answered."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar

from ..errors import ThreadlineError
from ..ledger import Ledger, Refusal
from ..ledger.admission import refused
from ..llm import (
    CallEvent,
    CallOptions,
    ContextWindowExceeded,
    LLMError,
    Message,
    Notice,
    Response,
    ResponseBuilder,
    Restart,
    StreamEvent,
)
from .cooldowns import Cooldowns, ModelHealth
from .events import Fallback, NoModelAvailable, RouterEvent

__all__ = ["EventHook", "OnRoutedDelta", "Route", "RouteSummary", "RoutedResponse"]

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
        answer = {f.name: getattr(response, f.name) for f in fields(Response)}
        return cls(**(answer | route))

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


@dataclass(frozen=True)
class RouteSummary:
    """How a routed call was answered: the last notice of a `FallbackModel`'s stream, before
    its end. Not an event of the run's log: the answer itself says it (`RoutedResponse`)."""

    requested_model: str
    used_model: str
    provider: str
    attempts: int
    max_tokens: int
    fallbacks: tuple[Fallback, ...]
    kind: ClassVar[str] = "model.routed"

    def to_json(self) -> dict[str, Any]:
        return {
            "requested_model": self.requested_model,
            "used_model": self.used_model,
            "attempts": self.attempts,
            "max_tokens": self.max_tokens,
        }


class Answer:
    """Collects a call's events into its `Response`, a `RoutedResponse` when a fallback
    chain answered it."""

    def __init__(self, provider: str, model: str) -> None:
        self.builder = ResponseBuilder(provider, model)
        self.summary: RouteSummary | None = None

    def add(self, event: CallEvent) -> None:
        if isinstance(event, Notice) and isinstance(event.event, RouteSummary):
            self.summary = event.event
        else:
            self.builder.add(event)

    def build(self) -> Response:
        summary = self.summary
        if summary is None:
            return self.builder.build()
        notices = tuple(n for n in self.builder.notices if n.event is not summary)
        return RoutedResponse.of(
            self.builder.build(),
            notices=notices,
            requested_model=summary.requested_model,
            used_model=summary.used_model,
            attempts=summary.attempts,
            max_tokens=summary.max_tokens,
            fallbacks=summary.fallbacks,
        )


@dataclass
class Route:
    """The state of one routed call (a fresh one for every call): what it asks, and what
    happened to each model it considered."""

    specs: tuple[str, ...]
    min_tokens: int
    messages: Sequence[Message]
    options: CallOptions
    cooldowns: Cooldowns
    ledger: Ledger
    attempts: int = 0
    reason: str | None = None  # why the previous model was left
    delivered: list[str] = field(default_factory=list)  # what the attempt has streamed
    fallbacks: list[Fallback] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)  # model -> why it was left
    refusals: list[tuple[str, Refusal]] = field(default_factory=list)
    errors: list[LLMError] = field(default_factory=list)
    health: dict[str, ModelHealth] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        return self.specs[0]

    def restart(self, model: str, error: LLMError) -> Restart | None:
        """After a failure: if output had gone out, the event telling the caller to discard
        it."""
        delivered, self.delivered = "".join(self.delivered), []
        return Restart(model, error.code, delivered) if delivered else None

    def leave(self, model: str, next_model: str | None, reason: str) -> Fallback | None:
        """Move on from `model` because of `reason`: the fallback to tell, if any."""
        self.left[model] = reason
        self.reason = reason
        if next_model is None:
            return None
        fallback = Fallback(model, next_model, reason)
        self.fallbacks.append(fallback)
        return fallback

    def summary(self, used: str, provider: str, max_tokens: int) -> RouteSummary:
        return RouteSummary(
            self.primary, used, provider, self.attempts, max_tokens, tuple(self.fallbacks)
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
            f"the prompt fits the context window of none of {', '.join(self.specs)}"
        )

    def _first_cooldown_end(self) -> float | None:
        ends = [h.until for h in self.health.values() if h.cooling]
        if not ends:
            return None
        return max(0.0, (min(ends) - datetime.now(UTC)).total_seconds())


# Reasons that waiting would not change.
_FINAL = frozenset({"budget", "unpriced", "context_window"})
