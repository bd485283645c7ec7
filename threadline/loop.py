"""The event loop threadline's processes run on: uvloop where it is installed (it comes with
`uvicorn[standard]`), else asyncio's own. Set `THREADLINE_LOOP=asyncio` to keep asyncio's.

uvloop runs the socket and callback plumbing in C: a WebSocket frame, a NOTIFY or a query's
reply goes through the loop with a fraction of the Python it takes otherwise
(benchmarks/README.md has the figures).

`settle_heap()` is for long-running processes once they have started (`threadline serve`
and `threadline worker` call it).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run", "settle_heap"]

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


def settle_heap() -> None:
    """Collect once, then move every object alive now (modules, the app, what startup
    loaded) out of the garbage collector's reach (`gc.freeze`): its full collections then
    walk only what was made since, and pause a serving process for less."""
    gc.collect()
    gc.freeze()
