"""`LedgerSource`: the ledger a model writes to, given or found in the workflow it runs in."""

from __future__ import annotations

from ..engine.context import current_context
from .ledger import Ledger

__all__ = ["LedgerSource"]


class LedgerSource:
    """The ledger given, else, inside a workflow, one on its engine's database (made once per
    database, and closed with the source)."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.given = ledger
        self._engine: Ledger | None = None

    def find(self) -> Ledger | None:
        """The ledger, or None outside a workflow when none was given."""
        if self.given is not None:
            return self.given
        ctx = current_context()
        if ctx is None:
            return None
        if self._engine is None or self._engine.pool is not ctx.engine.pool:
            self._engine = Ledger(ctx.engine.pool)
        return self._engine

    async def aclose(self) -> None:
        """Write pending rows; close what the source made."""
        for ledger in (self.given, self._engine):
            if ledger is not None:
                await ledger.drain()
        if self._engine is not None:
            await self._engine.budgets.close()
