"""Step retry policy: exponential backoff with full jitter, bounded attempts, a predicate."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


def _retry_everything(exc: BaseException) -> bool:
    return True


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first try; `retry_on` says whether an error is worth a retry."""

    max_attempts: int = 1
    initial_delay: float = 0.1
    max_delay: float = 30.0
    backoff: float = 2.0
    retry_on: Callable[[BaseException], bool] = _retry_everything

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): full jitter."""
        cap = min(self.max_delay, self.initial_delay * self.backoff ** (attempt - 1))
        return random.uniform(0, cap)

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        return attempt < self.max_attempts and self.retry_on(exc)


NO_RETRY = RetryPolicy()
