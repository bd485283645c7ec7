"""The event loop threadline's processes run on: uvloop where it is installed (it comes with
`uvicorn[standard]`), else asyncio's own. Set `THREADLINE_LOOP=asyncio` to keep asyncio's.

uvloop runs the socket and callback plumbing in C: a WebSocket frame, a NOTIFY or a query's
reply goes through the loop with a fraction of the Python it takes otherwise
(benchmarks/README.md has the figures).

`settle_heap()` is for long-running processes once they have started (`threadline serve`
and `threadline worker` call it). `start_eagerly()` runs a coroutine at once, up to where it
must wait (Python 3.12's eager tasks, for one call on 3.11 too).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["loop_factory", "run", "settle_heap", "start_eagerly"]

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


# Net new container objects between two collections of the youngest generation (CPython's
# default: 700). A serving process makes almost no cyclic garbage (its young collections
# found none in a streaming run), yet at 700 they ran ~5 times a second, each walking what a
# few hundred turns in flight keep alive: 300 streaming sessions lost 0.5 s in 20 s to the
# collector, in pauses up to 17 ms (young) and 111 ms (full). With 10,000, 7 ms in one
# collection (benchmarks/README.md).
YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Collect once, then move every object alive now (modules, the app, what startup
    loaded) out of the garbage collector's reach (`gc.freeze`): its full collections then
    walk only what was made since, and pause a serving process for less. Young collections
    then wait for `YOUNG_THRESHOLD` new objects."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def start_eagerly(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
    """Run `coro` now, in the caller's step, until it finishes or must wait: None if it
    finished (its result is dropped; its exception raises here), else a task that carries
    it on from there. A frame written to a socket that takes it at once costs no task and
    no trip through the loop (the live path of a streamed answer: one per token)."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_carry_on(coro, waiting_on))


async def _carry_on(coro: Coroutine[Any, Any, T], waiting_on: Any) -> T:
    result: T = await _Resumed(coro, waiting_on)
    return result


class _Resumed:
    """Awaiting it continues a started coroutine: what it waits on goes to the task, what
    the task sends or throws back goes to it (what `await` does, from mid-way)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        waiting_on = self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except BaseException as exc:  # the task's throw (a cancel), passed on
                try:
                    waiting_on = self._coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting_on = self._coro.send(sent)
                except StopIteration as stop:
                    return stop.value
