"""The worker: claims runs, executes them, recovers the runs of dead workers, wakes timers.

A worker holds a session-level advisory lock keyed by its id on the engine's listener
connection. When the process dies, PostgreSQL drops the connection and the lock at once, so
any other worker sees the death on its next recovery pass (every `recover_interval` seconds)
rather than after a lease runs out; the heartbeat lease covers a process that hangs while its
connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from ..errors import NonDeterminismError
from . import queries
from .context import WorkflowContext, _current
from .dbretry import database_gone, describe, log_loop_error, with_db_retry
from .interrupts import CancelledRun, RunLost, Suspended
from .records import Recorded
from .registry import Workflow
from .serialization import dumps, loads

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Queue:
    """A named queue. `concurrency` caps its running runs across all workers; `per_key`
    caps its runs in progress per queue key (e.g. per tenant), those waiting on a sleep, a
    message or a child included: a session's turn waiting for an approval keeps the
    session's next turn queued."""

    name: str
    concurrency: int | None = None
    per_key: int | None = None

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.per_key is not None


class Worker:
    def __init__(
        self,
        engine: Engine,
        worker_id: int,
        *,
        concurrency: int,
        poll_interval: float,
        recover_interval: float,
        lease: float,
    ) -> None:
        self.engine = engine
        self.id = worker_id
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.recover_interval = recover_interval
        self.lease = lease
        self.active: dict[str, tuple[asyncio.Task[None], WorkflowContext]] = {}
        self.reserved = 0
        self.wakeup = asyncio.Event()
        self._next_wake = float("inf")
        self._stopping = False
        self._starved = False  # capacity ran out: pending work may be waiting for a slot
        self._tasks: list[asyncio.Task[None]] = []
        self.unreleased: set[str] = set()  # runs left that could not be handed back yet
        self.last_pass = time.monotonic()  # the claim loop's last pass began (readiness)

    # -- capacity -----------------------------------------------------------------------------

    def try_reserve(self) -> bool:
        if self._stopping or len(self.active) + self.reserved >= self.concurrency:
            return False
        self.reserved += 1
        return True

    def unreserve(self) -> None:
        self.reserved -= 1

    def note_wake(self, at: float) -> None:
        if at < self._next_wake:
            self._next_wake = at
            self.wakeup.set()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._claim_loop(), name="threadline-claim"),
            loop.create_task(self._heartbeat_loop(), name="threadline-heartbeat"),
        ]

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop claiming, let running runs reach an end, then hand back the rest."""
        self._stopping = True
        self.wakeup.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.active:
            tasks = [task for task, _ in self.active.values()]
            await asyncio.wait(tasks, timeout=drain_timeout)
        leftover = list(self.active.items())
        for _, (task, _) in leftover:
            task.cancel()
        await asyncio.gather(*(t for _, (t, _) in leftover), return_exceptions=True)
        if leftover:
            async with self.engine.pool.acquire() as conn:
                for run_id, _ in leftover:
                    await conn.execute(queries.RELEASE, run_id, self.id)
        await self.engine.journal.drain()

    def cancel_local(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            entry = self.active.get(run_id)
            if entry is not None:
                entry[1].cancelled = True

    # -- loops --------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        # Neither loop may die of an error: a worker that stops heartbeating loses its runs
        # while it runs them, and one that stops claiming strands the queue.
        while True:
            await asyncio.sleep(self.lease / 4)
            try:
                async with self.engine.pool.acquire() as conn:
                    await conn.execute(queries.HEARTBEAT, self.id)
                    for run_id in list(self.unreleased):
                        if run_id not in self.active:  # not claimed here again meanwhile
                            await conn.execute(queries.RELEASE, run_id, self.id)
                        self.unreleased.discard(run_id)
            except Exception as exc:
                log_loop_error("heartbeat", exc)

    async def _claim_loop(self) -> None:
        last_recover = 0.0
        while not self._stopping:
            self.last_pass = time.monotonic()
            self.wakeup.clear()
            try:
                now = time.monotonic()
                if now - last_recover >= self.recover_interval:
                    last_recover = now
                    await self._recover()
                await self._claim()
            except Exception as exc:
                log_loop_error("claim loop", exc)
            timeout = min(self.poll_interval, self.recover_interval)
            if self._next_wake != float("inf"):
                timeout = max(0.0, min(timeout, self._next_wake - time.time() + 0.005))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout)
            if self._next_wake <= time.time():
                self._next_wake = float("inf")

    async def _recover(self) -> None:
        async with self.engine.pool.acquire() as conn:
            rows = await conn.fetch(queries.RECOVER_ORPHANS, self.id, self.lease)
        if rows:
            log.info("recovered %d runs of dead workers", len(rows))

    async def _claim(self) -> None:
        free = self.concurrency - len(self.active) - self.reserved
        if free <= 0 or self._stopping:
            self._starved = True
            return
        engine = self.engine
        names = list(engine.registry.workflows)
        limited = [q for q in engine.queues.values() if q.limited]
        async with engine.pool.acquire() as conn:
            await conn.execute(queries.PROMOTE_DUE)
            rows = list(
                await conn.fetch(
                    queries.CLAIM_UNLIMITED,
                    self.id,
                    [q.name for q in limited],
                    names,
                    engine.version,
                    free,
                )
            )
            for queue in limited:
                if len(rows) >= free:
                    break
                async with conn.transaction():
                    await conn.execute(queries.LOCK_QUEUE, queue.name)
                    rows += await conn.fetch(
                        queries.CLAIM_LIMITED,
                        self.id,
                        queue.name,
                        names,
                        engine.version,
                        free - len(rows),
                        queue.per_key,
                        queue.concurrency,
                    )
            self._starved = len(rows) >= free
            for row in rows:
                self._launch_claimed(row)

    async def start_here(
        self,
        queue: Queue,
        wf: Workflow,
        run_id: str,
        input_json: str,
        *,
        queue_key: str | None,
        parent_id: str | None,
    ) -> tuple[bool, bool]:
        """Insert a run of a limited queue and, when its queue lets it start now, claim it in
        the same statement (migration 0009): no NOTIFY and claim round trip before it runs (a
        chat turn starts in the process that stored its message). Call with a slot reserved.
        Returns (created, launched here). A run that must wait is claimed once a run of its
        key ends (that run's outcome wakes the workers)."""
        engine = self.engine

        async def attempt() -> str:
            async with engine.pool.acquire() as conn:
                status: str = await conn.fetchval(
                    queries.START_RUN_HERE,
                    run_id,
                    wf.name,
                    engine.version,
                    input_json,
                    queue.name,
                    queue_key,
                    parent_id,
                    self.id,
                    queue.per_key,
                    queue.concurrency,
                )
            return status

        status = await with_db_retry(attempt, what="start run")
        if status == "running":
            self.launch(wf, input_json, WorkflowContext(engine, run_id, wf.name))
        return status != "exists", status == "running"

    def _launch_claimed(self, row: asyncpg.Record) -> None:
        journal = {
            step_no: Recorded(name, output, error)
            for step_no, name, output, error in json.loads(row["journal"] or "[]")
        }
        wf = self.engine.registry.workflows[row["workflow"]]
        ctx = WorkflowContext(
            self.engine,
            row["id"],
            wf.name,
            journal,
            last_event_seq=row["last_event_seq"],
            waiting_step=row["waiting_step"],
            wake_at=row["wake_at"],
        )
        self.launch(wf, row["input"], ctx)

    # -- execution ----------------------------------------------------------------------------

    def launch(self, wf: Workflow, input_json: str, ctx: WorkflowContext) -> None:
        task = asyncio.get_running_loop().create_task(self._execute(wf, input_json, ctx))
        self.active[ctx.run_id] = (task, ctx)
        self.unreleased.discard(ctx.run_id)

    async def _execute(self, wf: Workflow, input_json: str, ctx: WorkflowContext) -> None:
        engine = self.engine
        run_id = ctx.run_id
        outcome: tuple[str, str | None, str | None] | None = None
        _current.set(ctx)
        try:
            params = loads(input_json)
            value = await wf.fn(ctx, *params["args"], **params["kwargs"])
            outcome = ("succeeded", dumps(value, "the workflow's result", engine.max_payload), None)
        except (Suspended, CancelledRun):
            pass
        except RunLost:
            await self._leave(run_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if database_gone(exc):
                # The journal (or a wait) could not be written past its retries: not the
                # workflow's failure. Another try, here or elsewhere, replays and goes on.
                log.warning("run %s left for another try: %s", run_id, describe(exc))
                await self._leave(run_id)
            else:
                if not isinstance(exc, NonDeterminismError):
                    log.debug("run %s failed", run_id, exc_info=True)
                error = dumps({"type": type(exc).__name__, "message": str(exc)}, "error")
                outcome = ("failed", None, error)
        finally:
            _current.set(None)
        try:
            if outcome is not None:
                # The outcome may share a commit with the last step, never with the run's
                # own insert (an UPDATE in that statement would not see the new row).
                if ctx.created is not None:
                    await ctx.created
                await ctx.send_riding()
                await engine.journal.follow(ctx.last_write)
                accepted = await engine.journal.add_outcome(run_id, *outcome)
                engine.run_finished(run_id, outcome if accepted else None)
        except Exception:
            # The database stayed away past the journal's retries. Our lease does not lapse
            # while we heartbeat, so hand the run back: another try replays it to this outcome.
            log.exception("could not record the outcome of run %s; releasing it", run_id)
            await self._leave(run_id)
        finally:
            self.active.pop(run_id, None)
            engine.run_left(run_id)
            if self._starved:
                self._starved = False
                self.wakeup.set()

    async def _leave(self, run_id: str) -> None:
        """Hand a run this worker can no longer carry back to the queue. If even that cannot
        be written now, the heartbeat loop retries it: a run never stays `running` under a
        worker that is alive but no longer runs it."""
        try:
            await self._release(run_id)
        except Exception as exc:
            log.warning("could not release run %s yet (%s); will retry", run_id, describe(exc))
            self.unreleased.add(run_id)

    async def _release(self, run_id: str) -> None:
        async def release() -> None:
            async with self.engine.pool.acquire() as conn:
                await conn.execute(queries.RELEASE, run_id, self.id)

        await with_db_retry(release, what="release run")
