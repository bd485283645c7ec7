"""The event loop threadline's processes run on: uvloop where it is installed (it comes with
`uvicorn[standard]`), else asyncio's own. Set `THREADLINE_LOOP=asyncio` to keep asyncio's.

uvloop runs the socket and callback plumbing in C: a WebSocket frame, a NOTIFY or a query's
reply goes through the loop with a fraction of the Python it takes otherwise
(benchmarks/README.md has the figures)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default loop."""
    if os.environ.get("THREADLINE_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` on the fastest loop available."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
