"""What a user is told when a turn fails: a `message.error` event that ends the turn.

Every turn ends with `message.end`, `message.cancelled` or `message.error {turn_id, code,
message, retryable}`. `code` is stable (an `LLMError` code, `budget_exceeded`, `tool_failed`,
`tool_timeout`, `step_failed`, `internal`); `message` is written for the person chatting, never
the exception's text (which may name hosts, keys or internals: that goes to the server's log);
`retryable` says whether sending the message again may help (a provider outage may pass; a
missing SDK will not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import StepError
from ..ledger import BudgetExceeded
from ..llm import LLMError

__all__ = ["TurnFailure", "turn_failure"]

_SETUP = (
    "The assistant is not set up correctly, so it cannot answer right now. "
    "The site's team can see what went wrong."
)
_BUSY = "The assistant's model is not answering right now. Please try again in a moment."
_BY_CODE = {
    "provider_not_installed": _SETUP,
    "missing_provider_key": _SETUP,
    "authentication_failed": _SETUP,
    "unknown_model": _SETUP,
    "invalid_request": _SETUP,
    "context_window_exceeded": (
        "This conversation has grown too long for the assistant. Please start a new one."
    ),
    "content_filtered": "The assistant's model declined to answer that.",
}


@dataclass(frozen=True)
class TurnFailure:
    code: str
    message: str
    retryable: bool

    def to_json(self, turn_id: str) -> dict[str, Any]:
        return {
            "turn_id": turn_id,
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }


def _llm_error_classes() -> dict[str, type[LLMError]]:
    found: dict[str, type[LLMError]] = {}
    pending: list[type[LLMError]] = [LLMError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def _of_llm_error(cls: type[LLMError]) -> TurnFailure:
    message = _BY_CODE.get(cls.code) or (_BUSY if cls.retryable else _SETUP)
    return TurnFailure(cls.code, message, cls.retryable)


def turn_failure(exc: BaseException, budget_message: str) -> TurnFailure:
    """What to tell the user of a turn that raised `exc` (a step's error arrives as a
    `StepError` naming its type: the same words as the error itself)."""
    if isinstance(exc, BudgetExceeded):
        return TurnFailure("budget_exceeded", budget_message, False)
    if isinstance(exc, LLMError):
        return _of_llm_error(type(exc))
    if isinstance(exc, StepError):
        cls = _llm_error_classes().get(exc.error_type)
        if cls is not None:
            return _of_llm_error(cls)
        if exc.step.startswith("tool:") and exc.error_type == "TimeoutError":
            return TurnFailure(
                "tool_timeout",
                "A tool the assistant used took too long, so it could not finish its answer. "
                "Please try again.",
                True,
            )
        if exc.step.startswith("tool:"):
            return TurnFailure(
                "tool_failed",
                "A tool the assistant used failed, so it could not finish its answer. "
                "Please try again.",
                True,
            )
        return TurnFailure(
            "step_failed", "Something went wrong while answering. Please try again.", True
        )
    return TurnFailure("internal", "Something went wrong while answering.", False)
