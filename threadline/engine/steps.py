"""A step's options: its name, retries and timeout, from its `@step` and the call."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .registry import StepOptions
from .retry import NO_RETRY, RetryPolicy

__all__ = ["step_options"]


def step_options(
    fn: Callable[..., Any],
    name: str | None,
    retries: int,
    retry: RetryPolicy | None,
    timeout: float | None,
    idempotent: bool,
) -> tuple[Callable[..., Any], StepOptions]:
    """The function to call and its options: those of its `@step`, overridden by the
    call's own."""
    base: StepOptions | None = getattr(fn, "__threadline_step__", None)
    target = inspect.unwrap(fn) if base is not None else fn
    if base is not None and not (name or retries or retry or timeout or idempotent):
        return target, base
    default_name = str(getattr(fn, "__qualname__", repr(fn)))
    options = StepOptions(
        name or (base.name if base else default_name),
        retry
        or (RetryPolicy(max_attempts=retries + 1) if retries else None)
        or (base.retry if base else NO_RETRY),
        timeout if timeout is not None else (base.timeout if base else None),
        idempotent or (base.idempotent if base else False),
    )
    return target, options
