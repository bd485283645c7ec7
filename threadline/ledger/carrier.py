"""A workflow step's model call and the step's record, durable in one commit.

A routed call is one step (ADR 0003): its ledger row must be durable no later than the step's
record (a recorded step is never replayed, so a row it lacked would be a cost lost), and a
step's record must be durable with its row (else a crash between the two commits replays the
step and buys the call again). So the rows of a step's calls are held while the step runs and
handed, with the step's record, to the ledger writer, which commits them in one transaction,
settling the reservation of the call that answered in it (see `threadline.ledger.writer`).

Rows of failed attempts that settle a reservation are written at once instead: the router
falls back to the next model, and that model's admission must see what the failure really
cost, not its worst case still held. A crash replays those attempts, which is a new try, not
the same answer bought twice.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..engine.records import StepRow
from .ledger import Ledger
from .outcomes import BudgetNotice
from .record import CallRecord

__all__ = ["HeldRows"]


class HeldRows:
    """A `RecordCarrier` (see `WorkflowContext.step`) for the ledger rows of one step."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._rows: list[CallRecord] = []
        self._carried: asyncio.Future[bool] | None = None
        self._notices: list[BudgetNotice] = []

    def takes(self, row: CallRecord) -> bool:
        """Whether this row waits for the step's record (else it is written at once)."""
        return row.reservation_id is None or row.status == "ok"

    def hold(self, row: CallRecord) -> None:
        self._rows.append(row)

    def carry(self, steps: list[StepRow]) -> asyncio.Future[bool] | None:
        if not self._rows:
            return None
        rows, self._rows = self._rows, []
        carried = self._ledger.submit_with_steps(rows, steps, self._notices.extend)
        if any(row.reservation_id is not None for row in rows):
            self._carried = carried  # a settlement: its notices are worth waiting for
        return carried

    def release(self) -> None:
        rows, self._rows = self._rows, []
        for row in rows:
            self._ledger.submit(row)

    async def notices(self) -> list[BudgetNotice]:
        """Once the rows carried are committed: the budget notices their settlement caused
        (none if the write failed: the run's next step finds that out). At once when no row
        settles a reservation: nothing to wait for."""
        if self._carried is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._carried)
        return self._notices
