"""What the router tells while it routes: fallbacks, restarts and output capped by a budget,
and the error when no model in the chain can answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..ledger import BudgetNotice
from ..llm import LLMError

__all__ = ["Capped", "Fallback", "NoModelAvailable", "Restart", "RouterEvent"]


@dataclass(frozen=True)
class Fallback:
    """The router left `from_model` for `to_model` (the next in the chain) because of
    `reason`: "cooldown", "context_window", "budget", "unpriced", or the code of the error the
    model failed with ("rate_limited", "overloaded", "server_error", "timeout", ...)."""

    from_model: str
    to_model: str
    reason: str
    kind: ClassVar[str] = "model.fallback"

    def to_json(self) -> dict[str, Any]:
        return {"from": self.from_model, "to": self.to_model, "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fallback:
        return cls(str(data["from"]), str(data["to"]), str(data["reason"]))


@dataclass(frozen=True)
class Restart:
    """A stream failed after some of its text was passed on: discard what `model` said
    (`discarded_text`); the answer starts again, from the next model of the chain."""

    model: str
    reason: str
    discarded_text: str
    kind: ClassVar[str] = "message.restart"

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "reason": self.reason, "discarded_text": self.discarded_text}


@dataclass(frozen=True)
class Capped:
    """The budget affords `model` fewer output tokens than the caller asked for
    (`requested`): it is called with `max_tokens`, and its answer may stop short."""

    model: str
    max_tokens: int
    requested: int
    kind: ClassVar[str] = "budget.capped"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "requested_max_tokens": self.requested,
        }


RouterEvent = Fallback | Restart | Capped | BudgetNotice


class NoModelAvailable(LLMError):
    """Every model of the chain was cooling down or failed with an error worth trying again
    later. `reasons` maps each model to why it was left; `retry_after` is the seconds until
    the first cooldown ends (None when none is cooling down)."""

    retryable = True
    code = "no_model_available"

    def __init__(
        self,
        reasons: dict[str, str],
        *,
        retry_after: float | None = None,
        partial_text: str = "",
    ) -> None:
        listed = ", ".join(f"{model}: {reason}" for model, reason in reasons.items())
        super().__init__(f"no model could answer ({listed})", partial_text=partial_text)
        self.reasons = reasons
        self.retry_after = retry_after
