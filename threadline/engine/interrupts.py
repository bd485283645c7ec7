"""How a run's coroutine stops before its workflow returns. BaseExceptions, so that no
`except Exception` in workflow code can swallow them."""

from __future__ import annotations

__all__ = ["CancelledRun", "RunLost", "Suspended"]


class Suspended(BaseException):
    """The run is waiting (timer, message, child): its coroutine is dropped, not kept."""


class RunLost(BaseException):
    """This worker no longer owns the run (cancelled, or taken over after a lease expired)."""


class CancelledRun(BaseException):
    """Cancellation observed at a step boundary."""
