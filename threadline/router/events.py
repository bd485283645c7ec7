"""What the router tells while it routes: fallbacks and restarts, and the error when no model
in the chain can answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..ledger import BudgetNotice
from ..llm import LLMError

__all__ = ["Fallback", "NoModelAvailable", "Restart", "RouterEvent"]


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


RouterEvent = Fallback | Restart | BudgetNotice


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
