"""A step's body: its options (name, retries, timeout), and running it with them."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from .registry import StepOptions
from .retry import NO_RETRY, RetryPolicy

__all__ = ["invoke", "step_options"]


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


async def invoke(
    fn: Callable[..., Any],
    options: StepOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    cancelled: Callable[[], bool],
) -> Any:
    """Call `fn` with its retry policy and timeout. `cancelled`: whether the run was
    cancelled meanwhile (no retry then)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                if options.timeout is not None:
                    async with asyncio.timeout(options.timeout):
                        result = await result
                else:
                    result = await result
            return result
        except Exception as exc:
            if cancelled() or not options.retry.should_retry(attempt, exc):
                raise
            await asyncio.sleep(options.retry.delay(attempt))
