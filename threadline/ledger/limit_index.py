"""Which scopes have a limit set at run time, known in the process without a round trip.

Most calls run under no limit at all. Asking the database "does a limit apply?" before each
one costs a round trip (about a millisecond) on every call, so a process keeps the set of
`(kind, key, period)` rows of `threadline.budgets` and follows changes to it: a trigger
(migration 0006) notifies `threadline_budgets` on every change, the engine's listener
connection hears it, and the set is reloaded.

The index only ever answers "certainly no limit". While it is not loaded (first use, a reload
in flight, the engine's listener lost) `unlimited` says False and the call takes the database
path as before; without an open engine on the pool there is no index at all. A limit set
through this process's `Budgets` counts at once; one set by another process counts for the
calls this process admits once the notification arrives (sent at commit, it usually arrives
well under a millisecond later).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence

import asyncpg

from ..engine.engine import Engine, engine_of
from .limits import Counter

__all__ = ["CHANNEL", "LimitIndex", "index_for"]

log = logging.getLogger(__name__)

CHANNEL = "threadline_budgets"
LOAD = "SELECT scope_kind, scope_key, period FROM threadline.budgets"

_INDEXES: weakref.WeakKeyDictionary[Engine, LimitIndex] = weakref.WeakKeyDictionary()


def index_for(pool: asyncpg.Pool) -> LimitIndex | None:
    """The limit index of the open engine on this pool (one per engine), or None."""
    engine = engine_of(pool)
    if engine is None:
        return None
    index = _INDEXES.get(engine)
    if index is None:
        index = _INDEXES[engine] = LimitIndex(engine)
    return index


class LimitIndex:
    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        self._limits: set[tuple[str, str, str]] | None = None  # None: unknown
        self._generation = 0  # bumped by every change heard: a load that raced one is stale
        self._loading: asyncio.Task[None] | None = None
        engine.watch(CHANNEL, self._changed)

    def unlimited(self, counters: Sequence[Counter]) -> bool:
        """True only when it is known that no limit applies to any of these counters: none
        declared in code, none set for their key or for their kind's `*`."""
        limits = self._limits
        if limits is None:
            self._load()
            return False
        for c in counters:
            if c.declared_usd is not None:
                return False
            if (c.kind, c.key, c.period) in limits or (c.kind, "*", c.period) in limits:
                return False
        return True

    def added(self, kind: str, key: str, period: str) -> None:
        """A limit this process just set (its own next call sees it without waiting)."""
        if self._limits is not None:
            self._limits.add((kind, key, period))

    def _changed(self, payload: str | None) -> None:
        self._generation += 1
        self._limits = None

    def _load(self) -> None:
        engine = self._engine()
        if engine is None or not engine.listening:
            return  # deaf: a load now could miss a change; ask the database meanwhile
        if self._loading is None or self._loading.done():
            self._loading = asyncio.get_running_loop().create_task(
                self._fetch(engine.pool), name="threadline-budget-limits"
            )

    async def _fetch(self, pool: asyncpg.Pool) -> None:
        generation = self._generation
        try:
            async with pool.acquire() as conn:
                rows = await conn.fetch(LOAD)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.debug("budget limits not loaded: %s", exc)
            return
        if generation == self._generation:
            self._limits = {(r[0], r[1], r[2]) for r in rows}
