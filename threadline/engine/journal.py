"""Group commit: many runs' durable writes in one statement, each caller awaiting its own.

Runs hand their writes (a new run, a step result, an event, a run's outcome) to the journal
and await a future. Whenever fewer than `max_inflight` flushes are in progress, everything
queued goes to PostgreSQL as one statement — one round trip and one commit for the whole
batch — so the batch size grows by itself with the load. Step results and outcomes are only
accepted for runs this worker still owns (fencing), so a worker presumed dead cannot
overwrite the work of the one that took over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ..errors import DatabaseUnavailable
from . import queries
from .dbretry import describe, is_transient, with_db_retry

log = logging.getLogger(__name__)

# The arrays each kind of write passes (see `queries.FLUSH`): runs, steps, events, outcomes.
_WIDTHS = (9, 5, 4, 4)


@dataclass
class _Batch:
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    steps: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    outcomes: list[tuple[Any, ...]] = field(default_factory=list)
    waiters: list[tuple[str, tuple[str, int], asyncio.Future[bool]]] = field(default_factory=list)
    queued: set[asyncio.Future[bool]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.waiters)


class Journal:
    """The batching writer. One per worker (its id fences step results and outcomes)."""

    def __init__(self, pool: asyncpg.Pool, worker_id: int, max_inflight: int = 2) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self._max_inflight = max_inflight
        self._inflight = 0
        self._scheduled = False  # a flush task will take the batch on its first turn
        self._batch = _Batch()
        self._tasks: set[asyncio.Task[None]] = set()
        # Connections kept between flushes (at most one per flush in flight): a flush is the
        # engine's hottest statement, and a pool acquire + release costs ~0.1 ms each time.
        self._idle: list[asyncpg.pool.PoolConnectionProxy] = []
        self.flushes = 0
        self.writes = 0

    def _future(self, kind: str, key: tuple[str, int]) -> asyncio.Future[bool]:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._batch.waiters.append((kind, key, fut))
        self._batch.queued.add(fut)
        self._kick()
        return fut

    def is_queued(self, fut: asyncio.Future[bool]) -> bool:
        """Whether this write still waits in the batch: a write added now shares its commit."""
        return fut in self._batch.queued

    async def follow(self, previous: asyncio.Future[bool] | None) -> None:
        """Return once a write added next cannot commit before `previous`: it shares its
        batch (one transaction), or `previous` has finished."""
        if previous is not None and not previous.done() and previous not in self._batch.queued:
            await asyncio.wait([previous])

    def add_run(
        self,
        run_id: str,
        workflow: str,
        app_version: str,
        input_json: str,
        *,
        queue: str,
        queue_key: str | None,
        parent_id: str | None,
        owned: bool,
    ) -> asyncio.Future[bool]:
        """Insert a run; True if it is new. `owned`: this worker runs it at once."""
        owner = self._worker_id if owned else None
        status = "running" if owned else "pending"
        self._batch.runs.append(
            (run_id, workflow, app_version, status, input_json, queue, queue_key, parent_id, owner)
        )
        return self._future("r", (run_id, 0))

    def add_step(
        self, run_id: str, step_no: int, name: str, output: str | None, error: str | None
    ) -> asyncio.Future[bool]:
        """Record a step; False if this worker no longer owns the run."""
        self._batch.steps.append((run_id, step_no, name, output, error))
        return self._future("s", (run_id, step_no))

    def add_event(self, run_id: str, seq: int, kind: str, data: str) -> asyncio.Future[bool]:
        self._batch.events.append((run_id, seq, kind, data))
        return self._future("e", (run_id, seq))

    def add_outcome(
        self, run_id: str, status: str, output: str | None, error: str | None
    ) -> asyncio.Future[bool]:
        """Record how the run ended; False if it was cancelled or taken over meanwhile."""
        self._batch.outcomes.append((run_id, status, output, error))
        return self._future("f", (run_id, 0))

    def _kick(self) -> None:
        if self._scheduled or self._inflight >= self._max_inflight or not self._batch:
            return
        self._inflight += 1
        self._scheduled = True
        task = asyncio.get_running_loop().create_task(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        # One turn of the event loop first: the tasks that are ready now (a run's first step
        # after its start, a workflow's outcome after its last step) join this commit.
        try:
            await asyncio.sleep(0)
        except BaseException:
            self._scheduled = False
            self._inflight -= 1
            raise
        batch, self._batch = self._batch, _Batch()
        self._scheduled = False
        try:
            accepted = await with_db_retry(lambda: self._execute(batch), what="journal flush")
        except BaseException as exc:
            failure = exc
            if isinstance(exc, Exception) and is_transient(exc):
                # The database stayed away past the retries: the writers learn it as such,
                # not as an error of the workflow or step that asked for the write.
                failure = DatabaseUnavailable(f"could not write the journal: {describe(exc)}")
                failure.__cause__ = exc
            for _, _, fut in batch.waiters:
                if not fut.done():
                    fut.set_exception(failure)
                    fut.exception()  # a write nobody awaits is not "never retrieved" noise
            if not isinstance(exc, Exception):
                raise
        else:
            self.flushes += 1
            self.writes += len(batch.waiters)
            for kind, key, fut in batch.waiters:
                if not fut.done():
                    fut.set_result((kind, *key) in accepted)
        finally:
            self._inflight -= 1
            self._kick()

    async def _execute(self, batch: _Batch) -> set[tuple[str, str, int]]:
        groups = (batch.runs, batch.steps, batch.events, batch.outcomes)
        args: list[Any] = [self._worker_id]
        for rows, width in zip(groups, _WIDTHS, strict=True):
            args += [list(col) for col in zip(*rows, strict=True)] if rows else [None] * width
        runs, steps, events, outcomes = (bool(rows) for rows in groups)
        sql = queries.FLUSH[runs, steps, events, outcomes]
        conn = self._idle.pop() if self._idle else await self._pool.acquire()
        try:
            written = await conn.fetch(sql, *args)
        except BaseException as exc:
            if is_transient(exc):  # the retry must not meet this connection again
                with contextlib.suppress(asyncpg.InterfaceError):  # the pool let it go already
                    conn.terminate()
            await self._pool.release(conn)
            raise
        self._idle.append(conn)
        return {(r[0], r[1], r[2]) for r in written if r[0] != "x"}

    async def release(self) -> None:
        """Give the kept connections back to the pool (before it closes)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._pool.release(conn)

    async def drain(self) -> None:
        """Wait until everything queued so far is written."""
        while self._tasks or self._batch:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:
                self._kick()
                await asyncio.sleep(0)
