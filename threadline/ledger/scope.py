"""Who a call is for: the scopes a ledger row is filed under and budgets apply to."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Scope:
    """Every field is optional; a call is counted under each one that is set."""

    tenant: str | None = None
    user: str | None = None
    session: str | None = None
    turn: str | None = None
    run_id: str | None = None
    step_no: int | None = None
    agent: str | None = None
    client: str | None = None  # where an anonymous session came from (an opaque key)

    def with_(self, **changes: Any) -> Scope:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Scope:
        return cls(**(data or {}))
