"""Step records another layer commits in its own transaction, beside rows of its own.

A step's effect and its record belong in one commit when losing either would cost something
(a model call's ledger row: ADR 0018). The step then hands its record to a `RecordCarrier`
instead of the journal; the carrier's writer opens a transaction, writes its own rows with
its own SQL, and has the engine write the records with `write_steps`, fenced as the journal
fences its own: a record is accepted only while its run's owner still runs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..db.connect import Connection
from . import queries

__all__ = ["RecordCarrier", "Recorded", "StepRow", "write_steps"]

# A step's record as written: run id, step number, name, output and error (JSON), owner.
StepRow = tuple[str, int, str, "str | None", "str | None", int]


@dataclass(frozen=True)
class Recorded:
    """A step's record as a replay reads it."""

    name: str
    output: str | None
    error: str | None


class RecordCarrier(Protocol):
    """Writes a step's record together with writes the step's body left with it, in one
    commit (the step's effect and its record), instead of the journal writing the record
    after them. See `WorkflowContext.step`'s `record_with`."""

    def carry(self, steps: list[StepRow]) -> asyncio.Future[bool] | None:
        """Write `steps` (the step's record, after any read-only records riding with it)
        with what is held, committed together; the future says whether the records were
        accepted (the run is still this worker's). None: nothing is held, so the journal
        writes them."""

    def release(self) -> None:
        """The step is over: write what is still held on its own (a cancelled body)."""


async def write_steps(conn: Connection, steps: Sequence[StepRow]) -> set[tuple[str, int]]:
    """Insert step records on `conn`, in the caller's transaction, so they commit with the
    caller's rows. Returns the `(run_id, step_no)` of the records accepted: those of runs
    still running under the owner each names (a worker presumed dead writes none)."""
    if not steps:
        return set()
    columns = [list(column) for column in zip(*steps, strict=True)]
    written = await conn.fetch(queries.INSERT_OWNED_STEPS, *columns)
    return {(row["run_id"], row["step_no"]) for row in written}
