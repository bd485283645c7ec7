"""The workflow context: every durable operation a workflow performs goes through it.

Each operation takes the next step number. On a first execution its outcome is journaled
before the workflow continues; on a replay (recovery, or resuming after a wait) the recorded
outcome is returned instead and the operation is not performed again.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import NonDeterminismError, StepError, WorkflowCancelled, WorkflowFailed
from . import waits
from .dbretry import database_gone
from .interrupts import CancelledRun, RunLost, Suspended
from .records import RecordCarrier, Recorded, StepRow
from .registry import StepOptions, WorkflowFn, as_workflow
from .retry import RetryPolicy
from .serialization import dumps, loads
from .steps import step_options

if TYPE_CHECKING:
    from .engine import Engine

T = TypeVar("T")

_current: ContextVar[WorkflowContext | None] = ContextVar("threadline_workflow", default=None)


def current_context() -> WorkflowContext | None:
    """The context of the workflow running in this task, outside any step body."""
    return _current.get()


def _error_json(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)}


class WorkflowContext:
    """Passed as the first argument of every workflow function."""

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        workflow: str,
        journal: dict[int, Recorded] | None = None,
        *,
        last_event_seq: int = 0,
        waiting_step: int | None = None,
        wake_at: datetime | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.cancelled = False
        self._engine = engine
        self._recorded = journal or {}
        self._step_no = 0
        self._event_seq = 0
        self._last_event_seq = last_event_seq
        self._waiting_step = waiting_step
        self._wake_at = wake_at
        # Durability is awaited lazily: a step's record must be durable before the next step
        # body runs (or anything else leaves the process), not before the workflow code goes
        # on. So the last record can share one commit with the run's outcome, and the first
        # with the insert of the run itself.
        self.created: asyncio.Future[bool] | None = None  # the run's insert, when not awaited
        self.last_write: asyncio.Future[bool] | None = None
        self._unsettled: asyncio.Future[bool] | None = None
        # Records of idempotent steps not yet handed to a writer: they go with the run's next
        # write, in its commit (`step`'s `idempotent`).
        self._riding: list[StepRow] = []

    @property
    def engine(self) -> Engine:
        """The engine running this workflow (its pool serves the layers above)."""
        return self._engine

    @property
    def step_no(self) -> int:
        """The number of the last durable operation this run has taken (0 before the first)."""
        return self._step_no

    # -- bookkeeping --------------------------------------------------------------------------

    def _next(self, name: str) -> tuple[int, Recorded | None]:
        if self.cancelled:
            raise CancelledRun
        self._step_no += 1
        n = self._step_no
        recorded = self._recorded.get(n)
        if recorded is not None and recorded.name != name:
            raise NonDeterminismError(
                f"run {self.run_id!r}: step {n} is {name!r} in the code but {recorded.name!r} "
                "in the journal; the workflow changed while this run was in flight (pin runs "
                "to a code version, or keep the old code until its runs finish)"
            )
        return n, recorded

    async def _record(
        self,
        n: int,
        name: str,
        output: str | None,
        error: str | None,
        settle: bool = True,
        carrier: RecordCarrier | None = None,
    ) -> None:
        """Queue the step's record; `_settle` later awaits that it was durably accepted.
        Unless `settle`: the record then rides with the run's next write, in its commit
        (an idempotent step: were it lost, a replay would run the body again, harmlessly)."""
        self._recorded[n] = Recorded(name, output, error)
        row: StepRow = (self.run_id, n, name, output, error, self._engine.worker_id)
        if not settle:
            self._riding.append(row)
            return
        rows, self._riding = [*self._riding, row], []
        written = None
        if carrier is not None:
            # Another writer commits it: this run's earlier writes must be committed first.
            earlier = [f for f in (self.created, self.last_write) if f is not None]
            if any(not f.done() for f in earlier):
                await asyncio.wait(earlier)
            written = carrier.carry(rows)
        if written is None:
            await self._journal_rows(rows)
        else:
            self.last_write = written
        self._unsettled = self.last_write

    async def _journal_rows(self, rows: list[StepRow]) -> None:
        """Queue step records on the journal, one batch (one commit), after earlier writes."""
        journal = self._engine.journal
        await journal.follow(self.last_write)
        for run_id, n, name, output, error, _ in rows:
            self.last_write = journal.add_step(run_id, n, name, output, error)

    async def send_riding(self) -> None:
        """Hand records riding for a next write to the journal now: the run is about to
        write something else, wait for durability, or end."""
        if self._riding:
            rows, self._riding = self._riding, []
            await self._journal_rows(rows)

    async def _settle(self) -> None:
        """Before a step body runs: the previous step's record is durable and was accepted."""
        fut, self._unsettled = self._unsettled, None
        if fut is not None and not await fut:
            raise RunLost

    async def settle_all(self) -> None:
        """Before anything that touches the run outside the journal: every write is durable."""
        await self.send_riding()
        await self._settle()
        for fut in (self.created, self.last_write):
            if fut is not None:
                await fut

    def _limit(self) -> int:
        return self._engine.max_payload

    # -- steps --------------------------------------------------------------------------------

    async def step(
        self,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        *args: Any,
        name: str | None = None,
        retries: int = 0,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        read_only: bool = False,
        idempotent: bool = False,
        record_with: RecordCarrier | None = None,
        **kwargs: Any,
    ) -> T:
        """Run `fn(*args, **kwargs)` as a durable step and return its (JSON) result.

        `idempotent`: running the body again is harmless (its writes are keyed, so a second
        run changes nothing); `read_only`, a step that only reads, is one. Its record is
        then not written on its own: it rides with the run's next write, in that commit,
        and the next step's body does not wait for it. A crash before that write replays
        the body, and nothing durable has followed from it yet: a turn's `load` and
        `commit` cost no commit of their own.

        `record_with`: writes the body leaves with the carrier (a model call's ledger row)
        commit together with the step's record, one commit where the body's write and then
        the record would be two."""
        target, options = step_options(fn, name, retries, retry, timeout, read_only or idempotent)
        result: T = await self.run_step(target, options, args, kwargs, record_with)
        return result

    async def run_step(
        self,
        fn: Callable[..., Any],
        options: StepOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        carrier: RecordCarrier | None = None,
    ) -> Any:
        n, recorded = self._next(options.name)
        if recorded is not None:
            if recorded.error is not None:
                err = loads(recorded.error)
                raise StepError(options.name, err["type"], err["message"])
            return loads(recorded.output)
        await self._settle()
        try:
            try:
                value = await self._invoke(fn, options, args, kwargs)
            except Exception as exc:
                if database_gone(exc):  # not the step's failure: the run is handed back and
                    raise  # replayed, and this step runs again
                error = dumps(_error_json(exc), "step error")
                await self._record(n, options.name, None, error, carrier=carrier)
                raise StepError(options.name, type(exc).__name__, str(exc)) from exc
            output = dumps(value, f"the result of step {options.name!r}", self._limit())
            await self._record(
                n, options.name, output, None, settle=not options.idempotent, carrier=carrier
            )
            return loads(output)
        finally:
            if carrier is not None:
                carrier.release()

    async def _invoke(
        self,
        fn: Callable[..., Any],
        options: StepOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Call the step's body with its retry policy and timeout (inside a step, steps run
        as plain calls)."""
        attempt = 0
        token = _current.set(None)
        try:
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
                    if self.cancelled or not options.retry.should_retry(attempt, exc):
                        raise
                    await asyncio.sleep(options.retry.delay(attempt))
        finally:
            _current.reset(token)

    # -- time ---------------------------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        """Durable sleep: the run waits in the database, holding no coroutine or memory."""
        await self.sleep_until(time.time() + max(0.0, seconds))

    async def sleep_until(self, when: float | datetime) -> None:
        target = when.timestamp() if isinstance(when, datetime) else float(when)
        n, recorded = self._next("sleep")
        await self.settle_all()
        if recorded is None:
            output = dumps(target, "sleep")
            if target <= time.time():
                await self._record(n, "sleep", output, None)
                return
            await waits.suspend(self._engine, self, n, "sleep", output, wake_at=target, topic=None)
        wake_at = float(loads(recorded.output if recorded else None) or 0)
        if wake_at > time.time():
            await waits.suspend(self._engine, self, n, None, None, wake_at=wake_at, topic=None)

    # -- messages -----------------------------------------------------------------------------

    async def receive(self, topic: str, timeout: float | None = None) -> Any:
        """The next message sent to this run on `topic`, or None after `timeout` seconds."""
        n, recorded = self._next(f"receive:{topic}")
        if recorded is not None:
            box = loads(recorded.output)
            return None if box is None else box[0]
        await self.settle_all()
        if self._waiting_step == n:
            deadline = self._wake_at.timestamp() if self._wake_at else None
        else:
            deadline = None if timeout is None else time.time() + timeout
        return await waits.receive_or_suspend(self._engine, self, n, topic, deadline)

    async def send(self, run_id: str, topic: str, payload: Any) -> None:
        """Send a message to another run, exactly once even if this workflow is replayed."""
        n, recorded = self._next(f"send:{topic}")
        if recorded is not None:
            return
        await self.settle_all()
        await self._engine.send(run_id, topic, payload, idempotency_key=f"{self.run_id}:{n}")
        await self._record(n, f"send:{topic}", "null", None)

    # -- children -----------------------------------------------------------------------------

    async def start_child(
        self,
        workflow: WorkflowFn | str,
        *args: Any,
        queue: str | None = None,
        queue_key: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Start a child workflow; returns its run id. Cancelling this run cancels it too."""
        wf = as_workflow(workflow, self._engine.registry)
        wf_name = wf if isinstance(wf, str) else wf.name
        n, recorded = self._next(f"child:{wf_name}")
        if recorded is not None:
            return str(loads(recorded.output))
        child_id = f"{self.run_id}:{n}"
        await self.settle_all()
        await self._engine.start(
            workflow,
            *args,
            run_id=child_id,
            queue=queue,
            queue_key=queue_key,
            parent_id=self.run_id,
            **kwargs,
        )
        await self._record(n, f"child:{wf_name}", dumps(child_id, "child id"), None)
        return child_id

    async def wait_child(self, run_id: str) -> Any:
        """The result of a child run; the parent waits without holding a coroutine."""
        n, recorded = self._next(f"wait:{run_id}")
        if recorded is None:
            await self.settle_all()
            recorded = await waits.child_or_suspend(self._engine, self, n, run_id)
        outcome = loads(recorded.output)
        if outcome["status"] == "cancelled":
            raise WorkflowCancelled(run_id)
        if outcome["status"] == "failed":
            err = outcome["error"] or {}
            raise WorkflowFailed(run_id, err.get("type", "Error"), err.get("message", ""))
        return outcome["output"]

    async def child(self, workflow: WorkflowFn | str, *args: Any, **kwargs: Any) -> Any:
        """Start a child workflow and wait for its result."""
        return await self.wait_child(await self.start_child(workflow, *args, **kwargs))

    # -- events -------------------------------------------------------------------------------

    async def emit(self, kind: str, data: Any = None) -> int:
        """Append an event to this run's ordered log; returns its sequence number."""
        self._event_seq += 1
        seq = self._event_seq
        if seq <= self._last_event_seq:
            return seq  # written before a replay
        payload = dumps(data, f"event {kind!r}", self._limit())
        await self.send_riding()
        journal = self._engine.journal
        await journal.follow(self.last_write)
        self.last_write = journal.add_event(self.run_id, seq, kind, payload)
        await self.last_write
        return seq


__all__ = [
    "CancelledRun",
    "RecordCarrier",
    "Recorded",
    "RunLost",
    "StepRow",
    "Suspended",
    "WorkflowContext",
    "current_context",
]
