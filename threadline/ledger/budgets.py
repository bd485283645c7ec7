"""`Budgets`: limits set at run time, reservations against them, and their recovery.

    budgets = ledger.budgets
    await budgets.set("tenant:acme", usd=100)                  # for all time
    await budgets.set("user:*", usd=1, period="daily")         # every user, per UTC day
    for state in await budgets.list(): ...

A process that reserves money registers as a *holder* and heartbeats while it lives. When one
dies (SIGKILL, a lost machine), the open reservations it leaves are settled by any other
holder's recovery pass (every `lease` seconds) or by `threadline budgets recover`: at what the
call had streamed when last reported (`watch`), else at its worst case. The money a crashed call
may have spent is not lost, and a reservation is settled once.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from ..engine.dbretry import DATABASE_ERRORS, log_loop_error, with_db_retry
from .estimates import Calibration
from .limit_index import LimitIndex, index_for
from .limits import PERIODS, Counter, Period, ScopeRef, money, today
from .outcomes import BudgetNotice, CallInfo, Grant, Refusal
from .progress import Seen, StreamProgress
from .queries import (
    BUDGET_STATES,
    HEARTBEAT,
    REGISTER_HOLDER,
    RELIMIT_USAGE,
    REMOVE_LIMIT,
    RETIRE_HOLDER,
    SET_LIMIT,
)
from .reservations import applicable, recover, reserve

__all__ = ["BudgetState", "Budgets", "NoticeHook"]

log = logging.getLogger(__name__)

NoticeHook = Callable[[BudgetNotice], Awaitable[None] | None]
# How long a holder may go without heartbeating before its reservations are recovered.
DEFAULT_LEASE_S = float(os.environ.get("THREADLINE_BUDGET_LEASE", "15"))


@dataclass(frozen=True)
class BudgetState:
    """One budget counter: the limit set at run time for it (`set_usd`, None if none), the
    limit its last reservation enforced (`enforced_usd`, e.g. one declared in code), and the
    money spent and reserved in its bucket (`total`, or today's date for a daily limit)."""

    scope: str
    bucket: str
    set_usd: Decimal | None
    enforced_usd: Decimal | None
    spent_usd: Decimal
    reserved_usd: Decimal
    overshoot_usd: Decimal
    calls: int
    warned_pct: int

    @property
    def period(self) -> Period:
        return "total" if self.bucket == "total" else "daily"

    @property
    def limit_usd(self) -> Decimal | None:
        return self.set_usd if self.set_usd is not None else self.enforced_usd

    @property
    def remaining_usd(self) -> Decimal | None:
        limit = self.limit_usd
        return None if limit is None else limit - self.spent_usd - self.reserved_usd


def _scope(scope: str | ScopeRef) -> ScopeRef:
    return scope if isinstance(scope, ScopeRef) else ScopeRef.parse(scope)


def _period(period: str) -> Period:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    return "total" if period == "total" else "daily"


class Budgets:
    """Budgets on one database: see the module docstring. `Ledger.budgets` gives one."""

    def __init__(self, pool: asyncpg.Pool, *, lease: float = DEFAULT_LEASE_S) -> None:
        self.pool = pool
        self.lease = lease
        self.calibration = Calibration(pool)
        self._hooks: list[NoticeHook] = []
        self._holder: int | None = None
        self._holder_lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._progress = StreamProgress(pool)

    # -- limits set at run time -----------------------------------------------------------------

    async def set(self, scope: str | ScopeRef, *, usd: Any, period: str = "total") -> None:
        """Set (or change) the limit of a scope: `global`, `tenant:acme`, `user:*`, ..."""
        ref, amount, per = _scope(scope), money(usd), _period(period)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(SET_LIMIT, ref.kind, ref.key, per, amount)
            await conn.execute(RELIMIT_USAGE, ref.kind, ref.key, per, amount, today())
        index = self.limit_index()
        if index is not None:
            index.added(ref.kind, ref.key, per)

    async def remove(self, scope: str | ScopeRef, *, period: str = "total") -> bool:
        """Remove a limit set at run time (spending so far stays on record)."""
        ref = _scope(scope)
        async with self.pool.acquire() as conn:
            status = await conn.execute(REMOVE_LIMIT, ref.kind, ref.key, _period(period))
        return status.endswith(" 1")

    async def list(
        self, scope: str | ScopeRef | None = None, *, kind: str | None = None
    ) -> builtins.list[BudgetState]:
        """Limits and today's spending: every counter with a limit or with money on it."""
        ref = _scope(scope) if scope is not None else None
        kind = ref.kind if ref is not None else kind
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(BUDGET_STATES, kind, ref.key if ref else None, today())
        return [
            BudgetState(
                scope=str(ScopeRef(r["scope_kind"], r["scope_key"])),
                bucket=r["bucket"],
                set_usd=r["set_usd"],
                enforced_usd=r["enforced_usd"],
                spent_usd=r["spent_usd"],
                reserved_usd=r["reserved_usd"],
                overshoot_usd=r["overshoot_usd"],
                calls=r["calls"],
                warned_pct=r["warned_pct"],
            )
            for r in rows
        ]

    async def get(self, scope: str | ScopeRef) -> builtins.list[BudgetState]:
        """The scope's counters (its total and today's), as `list` shows them."""
        return await self.list(scope)

    # -- notices --------------------------------------------------------------------------------

    def on_notice(self, hook: NoticeHook) -> NoticeHook:
        """Call `hook` with every warning (50/80/100 %) and overshoot this process settles.
        Usable as a decorator."""
        self._hooks.append(hook)
        return hook

    async def dispatch(self, notices: Sequence[BudgetNotice]) -> None:
        for notice in notices:
            if notice.threshold is not None:
                log.info(
                    "budget %s (%s) is %d%% spent", notice.scope, notice.bucket, notice.threshold
                )
            else:
                log.warning(
                    "budget %s (%s) overshot by $%s: calls cost more than estimated",
                    notice.scope,
                    notice.bucket,
                    notice.overshoot_usd,
                )
            for hook in self._hooks:
                try:
                    result = hook(notice)
                    if result is not None:
                        await result
                except Exception:
                    log.exception("budget notice hook %r failed", hook)

    # -- reservations ---------------------------------------------------------------------------

    def limit_index(self) -> LimitIndex | None:
        """What this process knows of the limits set, when an open engine shares its pool."""
        return index_for(self.pool)

    def unlimited(self, counters: Sequence[Counter]) -> bool:
        """True when it is known without asking the database that none of these counters has
        a limit (see `limit_index`); False when one has, or when that is not known."""
        index = index_for(self.pool)
        return index is not None and index.unlimited(counters)

    async def applies(self, counters: Sequence[Counter]) -> bool:
        """Whether any of these counters has a limit."""
        async with self.pool.acquire() as conn:
            return await applicable(conn, counters)

    async def reserve(
        self,
        counters: Sequence[Counter],
        *,
        fixed_usd: Decimal,
        per_token_usd: Decimal,
        max_tokens: int,
        min_tokens: int,
        call: CallInfo,
        wait: float = 0.0,
    ) -> Grant | Refusal:
        """Reserve a call's worst case on every limited counter (see `reservations.reserve`).
        With `wait`, a call that would fit once the calls in flight settle waits (up to `wait`
        seconds) instead of being refused."""
        holder = await self.holder()
        loop = asyncio.get_running_loop()
        give_up, delay = loop.time() + wait, 0.02
        while True:

            async def attempt() -> Grant | Refusal:
                async with self.pool.acquire() as conn:
                    return await reserve(
                        conn,
                        counters,
                        fixed_usd=fixed_usd,
                        per_token_usd=per_token_usd,
                        max_tokens=max_tokens,
                        min_tokens=min_tokens,
                        holder=holder,
                        call=call,
                    )

            outcome = await with_db_retry(attempt, what="budget reservation")
            if isinstance(outcome, Grant) or not outcome.waiting_helps:
                return outcome
            if loop.time() + delay > give_up:
                return outcome
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- what calls in flight have streamed -----------------------------------------------------

    def watch(self, reservation_id: int, seen: Callable[[], Seen]) -> None:
        """While a reserved call streams: `seen()` gives its input tokens (the provider's
        count, else the estimate a cut stream is charged) and the output tokens received.
        They are told to the database as they change (see `progress`), so that recovery
        charges a call whose process died mid-stream what it had streamed, not its worst
        case."""
        self._progress.watch(reservation_id, seen)

    def unwatch(self, reservation_id: int) -> None:
        self._progress.unwatch(reservation_id)

    # -- the holder and its recovery loop -------------------------------------------------------

    async def holder(self) -> int:
        """This process's holder id, registering it (and starting its heartbeat) at first use."""
        if self._holder is not None:
            return self._holder
        async with self._holder_lock:
            if self._holder is None:
                async with self.pool.acquire() as conn:
                    holder: int = await conn.fetchval(
                        REGISTER_HOLDER, socket.gethostname(), os.getpid(), self.lease
                    )
                self._holder = holder
                self._loop_task = asyncio.get_running_loop().create_task(
                    self._keep_alive(), name="threadline-budget-holder"
                )
            return self._holder

    async def recover(self) -> int:
        """Settle, at their worst case, the reservations of holders that died; returns how
        many. Runs by itself in every process that holds reservations."""
        count = 0
        while True:
            async with self.pool.acquire() as conn:
                settled = await recover(conn, self._holder or 0)
            if settled.reservations:
                log.warning(
                    "settled %d reservations of dead processes (at what they had streamed, "
                    "else at their worst case)",
                    len(settled.reservations),
                )
            await self.dispatch(settled.all_notices())
            count += len(settled.reservations)
            if len(settled.reservations) < 500:
                return count

    async def _keep_alive(self) -> None:
        beat = self.lease / 3
        while True:
            try:
                await self.recover()
                async with self.pool.acquire() as conn:
                    alive = await conn.fetchval(HEARTBEAT, self._holder)
                if alive is None:  # judged dead while stalled: its reservations were recovered
                    log.warning(
                        "budget holder %s was presumed dead; registering again", self._holder
                    )
                    async with self.pool.acquire() as conn:
                        self._holder = await conn.fetchval(
                            REGISTER_HOLDER, socket.gethostname(), os.getpid(), self.lease
                        )
            except Exception as exc:  # a loop that died here would get its reservations taken
                log_loop_error("budget heartbeat", exc)
            await asyncio.sleep(beat)

    async def close(self) -> None:
        """Stop heartbeating; reservations still open are left to recovery."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        self._loop_task = None
        await self._progress.close()
        holder, self._holder = self._holder, None
        if holder is not None:
            with contextlib.suppress(*DATABASE_ERRORS):
                async with self.pool.acquire() as conn:
                    await conn.execute(RETIRE_HOLDER, holder)
