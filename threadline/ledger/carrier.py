"""A workflow step's model calls and the step's record, durable in one commit.

A routed call is one step (ADR 0003): its ledger rows must be durable no later than the step's
record (a recorded step is never replayed, so a row it lacked would be a cost lost), and were
written first, the record after, two commits one after the other in every call's path. Rows
of calls under no reservation (nothing waits for their settlement) are instead held while the
step runs and handed, with the step's record, to the ledger writer, which commits both in one
statement. Rows that settle a reservation are written as before, at once: the step's result
carries the budget notices their settlement caused.
"""

from __future__ import annotations

import asyncio

from ..engine.context import StepRow
from .ledger import Ledger
from .record import CallRecord

__all__ = ["HeldRows"]


class HeldRows:
    """A `RecordCarrier` (see `WorkflowContext.step`) for the ledger rows of one step."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._rows: list[CallRecord] = []

    def hold(self, row: CallRecord) -> None:
        self._rows.append(row)

    def carry(self, steps: list[StepRow]) -> asyncio.Future[bool] | None:
        if not self._rows:
            return None
        rows, self._rows = self._rows, []
        return self._ledger.submit_with_steps(rows, steps)

    def release(self) -> None:
        rows, self._rows = self._rows, []
        for row in rows:
            self._ledger.submit(row)
