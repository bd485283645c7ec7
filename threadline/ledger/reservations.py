"""Reservations: reserve before a call, settle after it, recover a dead holder's (their
SQL is in `queries`).

Reserving is one statement over every counter the call falls under: it locks the counters
that have a limit (in key order, so concurrent reservations never deadlock), finds the least
headroom among them, and — only if the call fits every one with at least its minimum of output
tokens — adds the same amount to each counter's `reserved_usd` and records the reservation.
All counters or none. Under READ COMMITTED the lock returns each counter's latest committed
values, so the check and the update see the same money.

Settling deletes the reservation (so it is settled exactly once, by the call or by recovery,
whichever comes first) and moves its amount from `reserved_usd` to `spent_usd` at the actual
cost, in the same transaction as the call's ledger row. Recovery settles a dead holder's
reservation at what its call had streamed when the holder last reported it, else at its
worst case.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Any

from ..db.connect import Connection
from .limits import Counter, ScopeRef
from .outcomes import BudgetNotice, CallInfo, Grant, Refusal, Settled
from .queries import APPLICABLE, FORGET_DEAD_HOLDERS, RECOVER, RESERVE, SEED, SETTLE

__all__ = ["applicable", "recover", "reserve", "settle"]


def _counter_args(counters: Sequence[Counter]) -> list[Any]:
    """The counters as the first five parameters of the statements that take them."""
    return [
        [c.kind for c in counters],
        [c.key for c in counters],
        [c.period for c in counters],
        [c.bucket for c in counters],
        [c.declared_usd for c in counters],
    ]


async def applicable(conn: Connection, counters: Sequence[Counter]) -> bool:
    """Whether any of these counters has a limit."""
    found: int = await conn.fetchval(APPLICABLE, *_counter_args(counters))
    return found > 0


async def reserve(
    conn: Connection,
    counters: Sequence[Counter],
    *,
    fixed_usd: Decimal,
    per_token_usd: Decimal,
    max_tokens: int,
    min_tokens: int,
    holder: int,
    call: CallInfo,
) -> Grant | Refusal:
    """Reserve the call's worst case on every limited counter, lowering its output tokens to
    what the tightest affords (never below `min_tokens`); or say why it does not fit."""
    args = _counter_args(counters)
    extra = [fixed_usd, per_token_usd, max_tokens, min_tokens, holder, *call.args()]
    needed = _ceil_usd(fixed_usd + per_token_usd * min_tokens)
    for _ in range(3):
        row = await conn.fetchrow(RESERVE, *args, *extra)
        assert row is not None  # one row, always
        if row["wanted"] == 0:
            return Grant(max_tokens)  # no limit applies to this call
        if row["found"] == row["wanted"]:
            break
        await conn.execute(SEED, *args)  # a counter's first call: create its row, then retry
    else:  # pragma: no cover - counters would have to vanish as fast as they are created
        raise RuntimeError("budget counters disappeared while reserving")
    if row["reservation_id"] is not None:
        return Grant(row["tokens"], row["reservation_id"], row["amount"])
    locked: list[dict[str, Any]] = json.loads(row["counters"])
    return _refusal(min(locked, key=_headroom), needed)


def _ceil_usd(value: Decimal) -> Decimal:
    return value.quantize(Decimal("1e-10"), rounding=ROUND_CEILING)


def _headroom(counter: dict[str, Any]) -> Decimal:
    return (
        Decimal(str(counter["limit"]))
        - Decimal(str(counter["spent"]))
        - Decimal(str(counter["reserved"]))
    )


def _refusal(counter: dict[str, Any], needed: Decimal, reason: str = "budget") -> Refusal:
    return Refusal(
        scope=str(ScopeRef(counter["kind"], counter["key"])),
        bucket=counter["bucket"],
        limit_usd=Decimal(str(counter["limit"])),
        spent_usd=Decimal(str(counter["spent"])),
        reserved_usd=Decimal(str(counter["reserved"])),
        needed_usd=needed,
        reason=reason,
    )


def _settled(rows: Sequence[Any]) -> Settled:
    result = Settled()
    first_touch: dict[tuple[str, str, str], int] = {}
    for row in rows:
        if row["reservation_id"] is None:
            continue
        result.reservations.add(row["reservation_id"])
        for key in zip(row["scope_kinds"], row["scope_keys"], row["buckets"], strict=True):
            first_touch.setdefault(key, row["reservation_id"])
    for row in rows:
        if row["reservation_id"] is not None:
            continue
        key = (row["scope_kind"], row["scope_key"], row["bucket"])
        owner = first_touch.get(key, 0)
        result.notices.setdefault(owner, []).extend(_notices(row))
    return result


def _notices(row: Any) -> list[BudgetNotice]:
    scope = str(ScopeRef(row["scope_kind"], row["scope_key"]))
    common = (scope, row["bucket"], row["limit_usd"], row["spent_usd"])
    found = [
        BudgetNotice(*common, threshold=t)
        for t in (50, 80, 100)
        if row["warned_before"] < t <= row["warned_after"]
    ]
    if row["overshoot"] and row["overshoot"] > 0:
        found.append(BudgetNotice(*common, overshoot_usd=row["overshoot"]))
    return found


async def settle(
    conn: Connection, reservations: Sequence[int], actual_usd: Sequence[Decimal | None]
) -> Settled:
    """Settle reservations at their actual cost (None: at what they reserved)."""
    return _settled(await conn.fetch(SETTLE, list(reservations), list(actual_usd)))


async def recover(conn: Connection, holder: int, batch: int = 500) -> Settled:
    """Settle, at their worst case, the open reservations of holders that are gone."""
    result = _settled(await conn.fetch(RECOVER, holder, batch))
    await conn.execute(FORGET_DEAD_HOLDERS, holder)
    return result
