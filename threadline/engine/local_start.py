"""A run started by a caller's own statement, in the commit of rows of its own.

`Engine.start` inserts a run of a limited queue and, when the queue lets it start, claims it
for this process in one statement (`threadline.start_run_here`, migration 0009, ADR 0017).
A caller whose own write must come first (a chat turn: the user's message) can put that
call in its statement instead: its rows and the run commit together, one commit where there
were two. `Engine.local_start` says whether this process may start one now (its worker has
room; the queue is limited) and reserves the slot; the caller's statement calls

    threadline.start_run_here(run_id, workflow, version, input::jsonb, queue, queue_key,
                              parent_id, worker_id, per_key, concurrency)

with `LocalStart.params()` for the workflow's and queue's arguments, then hands the status it
returned to `launched` (which runs the claimed run here), or closes the handle unused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import WorkflowContext
from .registry import Workflow
from .runs import RunHandle
from .serialization import dumps
from .worker import Queue, Worker

if TYPE_CHECKING:
    from .engine import Engine


class LocalStart:
    def __init__(self, engine: Engine, worker: Worker, wf: Workflow, queue: Queue) -> None:
        self._engine = engine
        self._worker = worker
        self._wf = wf
        self._queue = queue
        self._reserved = True

    def params(self) -> tuple[str, str, str, int, int | None, int | None]:
        """(workflow, version, queue, worker_id, per_key, concurrency) for the call."""
        q = self._queue
        return (
            self._wf.name,
            self._engine.version,
            q.name,
            self._worker.id,
            q.per_key,
            q.concurrency,
        )

    def launched(self, run_id: str, args: list[Any], status: str) -> RunHandle:
        """The statement committed run `run_id` (input `{"args": args, "kwargs": {}}`) with
        `status` from `start_run_here` ('running': claimed here, so it runs here now;
        'pending': it waits for its queue; 'exists')."""
        self.close()
        if status == "running":
            input_json = dumps({"args": args, "kwargs": {}}, f"the input of {self._wf.name}")
            self._worker.launch(
                self._wf, input_json, WorkflowContext(self._engine, run_id, self._wf.name)
            )
        return RunHandle(self._engine, run_id, status != "exists")

    def close(self) -> None:
        """Give the reserved slot back (a launched run counts as active instead)."""
        if self._reserved:
            self._reserved = False
            self._worker.unreserve()

    def __enter__(self) -> LocalStart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
