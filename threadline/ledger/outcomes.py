"""What reserving gives back (a `Grant` or a `Refusal`), what a reservation records of its
call, and what settling tells (`BudgetNotice`s)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

__all__ = ["BudgetNotice", "CallInfo", "Capped", "Grant", "Refusal", "Settled", "events_json"]


@dataclass(frozen=True)
class Grant:
    """A call may go ahead with at most `max_tokens` output tokens. `reservation_id` is None
    when nothing had to be reserved (no limit applies, or the call costs nothing)."""

    max_tokens: int
    reservation_id: int | None = None
    amount_usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class Refusal:
    """The call does not fit: the tightest counter, and the least it would need."""

    scope: str
    bucket: str
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal
    needed_usd: Decimal
    reason: str = "budget"  # "budget", or "unpriced" (a model without a price under a limit)

    @property
    def waiting_helps(self) -> bool:
        """Whether the call would fit once the reservations in flight are settled."""
        return self.limit_usd - self.spent_usd >= self.needed_usd


@dataclass(frozen=True)
class Capped:
    """The budget affords `model` fewer output tokens than the caller asked for
    (`requested`): it is called with `max_tokens`, and its answer may stop short."""

    model: str
    max_tokens: int
    requested: int
    kind: ClassVar[str] = "budget.capped"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "requested_max_tokens": self.requested,
        }


@dataclass(frozen=True)
class BudgetNotice:
    """A counter crossed a warning threshold (50, 80 or 100 % of its limit spent), or, in
    estimate mode, calls cost more than they reserved (`overshoot_usd`)."""

    scope: str
    bucket: str
    limit_usd: Decimal
    spent_usd: Decimal
    threshold: int | None = None
    overshoot_usd: Decimal = Decimal(0)

    @property
    def percent(self) -> int:
        """The share of the limit spent, in whole percent (rounded down): what a budget line
        computing limit - spent shows, where `threshold` is the warning level it crossed."""
        if self.limit_usd <= 0:
            return 100
        return int(self.spent_usd * 100 // self.limit_usd)

    @property
    def kind(self) -> str:
        """The event kind: `budget.update` for a threshold, `budget.overshoot` otherwise."""
        return "budget.update" if self.threshold is not None else "budget.overshoot"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "scope": self.scope,
            "period": "total" if self.bucket == "total" else "daily",
            "bucket": self.bucket,
            "limit_usd": str(self.limit_usd),
            "spent_usd": str(self.spent_usd),
        }
        if self.threshold is not None:
            data["threshold"] = self.threshold
            data["percent"] = self.percent
        else:
            data["overshoot_usd"] = str(self.overshoot_usd)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BudgetNotice:
        return cls(
            scope=str(data["scope"]),
            bucket=str(data["bucket"]),
            limit_usd=Decimal(data["limit_usd"]),
            spent_usd=Decimal(data["spent_usd"]),
            threshold=data.get("threshold", data.get("percent")),  # before: percent only
            overshoot_usd=Decimal(data.get("overshoot_usd", "0")),
        )


@dataclass(frozen=True)
class CallInfo:
    """What a reservation records of its call, for the ledger row recovery may have to write."""

    provider: str
    model: str
    requested_model: str
    scope: dict[str, Any]
    input_tokens: int
    mode: str = "strict"
    attempt: int = 1
    fallback_reason: str | None = None
    streams: bool = False  # reported from its start: nothing streamed yet, not its worst case

    def args(self) -> list[Any]:
        """The reservation statement's parameters for it ($11 on)."""
        return [
            self.mode,
            self.provider,
            self.model,
            self.requested_model,
            self.attempt,
            self.fallback_reason,
            json.dumps(self.scope),
            self.input_tokens,
            self.streams,
        ]


@dataclass
class Settled:
    """What one settlement statement did: which reservations it settled (the others were
    settled already, by recovery), and the notices, by the reservation that caused them."""

    reservations: set[int] = field(default_factory=set)
    notices: dict[int, list[BudgetNotice]] = field(default_factory=dict)

    def all_notices(self) -> list[BudgetNotice]:
        return [n for found in self.notices.values() for n in found]


def events_json(notices: Sequence[BudgetNotice]) -> list[dict[str, Any]]:
    """Notices as the events a workflow emits for them (`budget.update`, `budget.overshoot`)."""
    return [{"kind": n.kind, "data": n.to_json()} for n in notices]
