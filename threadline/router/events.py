"""What the router tells while it routes: fallbacks, restarts and output capped by a budget,
and the error when no model in the chain can answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..ledger import BudgetNotice, Capped
from ..llm import LLMError, Restart

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
