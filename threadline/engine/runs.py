"""Started runs seen from outside: handles, outcomes and events, and who waits for them here.

A waiter in this process sleeps until the run's notification (`threadline_done`,
`threadline_events`) or the local worker wakes it, then reads again; it also reads again
every few seconds and after the listener reconnects, so a missed notification costs time,
never an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import UnknownRun, WorkflowCancelled, WorkflowFailed
from .serialization import loads

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["TERMINAL", "Event", "Outcome", "RunHandle", "Waiters", "unwrap"]

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
FINISHED_KEPT = 1024  # recent local outcomes kept for `result`

Outcome = tuple[str, str | None, str | None]  # status, output json, error json


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    data: Any
    at: datetime


class RunHandle:
    """A started run: await its result, follow its events, cancel it."""

    def __init__(self, engine: Engine, run_id: str, created: bool) -> None:
        self.engine = engine
        self.run_id = run_id
        self.created = created  # False when `start` found an existing run with this id

    async def result(self, timeout: float | None = None) -> Any:
        return await self.engine.result(self.run_id, timeout)

    async def status(self) -> str:
        return (await self.engine.get_run(self.run_id)).status

    async def cancel(self) -> list[str]:
        return await self.engine.cancel(self.run_id)

    def events(self, after_seq: int = 0, follow: bool = True) -> AsyncIterator[Event]:
        return self.engine.events(self.run_id, after_seq, follow)

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"


def unwrap(run_id: str, outcome: Outcome) -> Any:
    """The run's result, or the error its outcome stands for."""
    status, output, error = outcome
    if status == "succeeded":
        return loads(output)
    if status == "cancelled":
        raise WorkflowCancelled(run_id)
    err = loads(error) or {}
    raise WorkflowFailed(run_id, err.get("type", "Error"), err.get("message", ""))


# The run's next events after a sequence number, or (none yet) its status.
ReadEvents = Callable[[int], Awaitable[tuple[list[Any], str | None]]]


class Waiters:
    """Who awaits a run's outcome or its next events in this process, and the outcomes of
    runs finished here lately (`result` needs no query for them: the run's NOTIFY can wake a
    waiter before the local worker hands the outcome over)."""

    def __init__(self) -> None:
        self._results: dict[str, list[asyncio.Future[Outcome | None]]] = defaultdict(list)
        self._finished: OrderedDict[str, Outcome] = OrderedDict()
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    def resolve(self, run_id: str, outcome: Outcome | None) -> None:
        """Wake whoever awaits the run's outcome (None: read it from the database again)."""
        for fut in self._results.pop(run_id, ()):
            if not fut.done():
                fut.set_result(outcome)

    def signal_events(self, run_id: str) -> None:
        for signal in self._events.get(run_id, ()):
            signal.set()

    def finished(self, run_id: str, outcome: Outcome | None) -> None:
        """The local worker finished the run (`outcome` durable; None: it was not)."""
        if outcome is not None:
            self._finished[run_id] = outcome
            if len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)
        self.resolve(run_id, outcome)
        self.signal_events(run_id)

    def wake_all(self) -> None:
        """Notifications may have been missed: every waiter checks again."""
        for run_id in list(self._results):
            self.resolve(run_id, None)
        for signals in self._events.values():
            for signal in signals:
                signal.set()

    def clear(self) -> None:
        self._results.clear()
        self._finished.clear()
        self._events.clear()

    def expect(self, run_id: str) -> tuple[asyncio.Future[Outcome | None], Outcome | None]:
        """A future the run's outcome (or None: look again) will be set on, and the outcome
        already known here, if the run finished here lately. `Engine.result` waits on it;
        no closure or coroutine of its own per wait (a run's result is awaited on the hot
        path, and what it allocates makes the young collections run more often)."""
        fut: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._results[run_id].append(fut)
        return fut, self._finished.get(run_id)

    async def events(
        self,
        run_id: str,
        after_seq: int,
        follow: bool,
        read: ReadEvents,
        exists: Callable[[], Awaitable[bool]],
    ) -> AsyncIterator[Event]:
        """The run's events after `after_seq`, in order; with `follow`, live until it ends."""
        signal = asyncio.Event()
        self._events[run_id].add(signal)
        seq = after_seq
        try:
            while True:
                signal.clear()
                rows, status = await read(seq)
                for row in rows:
                    seq = row["seq"]
                    yield Event(seq, row["kind"], loads(row["data"]), row["at"])
                if rows:
                    continue
                if status is None and not await exists():
                    raise UnknownRun(f"no run with id {run_id!r}")
                if not follow or status in TERMINAL:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), 2.0)
        finally:
            signals = self._events.get(run_id)
            if signals is not None:
                signals.discard(signal)
                if not signals:
                    del self._events[run_id]
