"""Which scopes have a limit set at run time, known in the process without a round trip.

Most calls run under no limit at all. Asking the database "does a limit apply?" before each
one costs a round trip (about a millisecond) on every call, so a process keeps the set of
`(kind, key, period)` rows of `threadline.budgets` and follows changes to it (a
`threadline.engine.mirror.Mirror`): a trigger (migration 0006) notifies `threadline_budgets`
on every change, the mirror registers that channel with the engine's listener (`CHANNEL`,
given to `mirror_for`), and the set is reloaded.

The index only ever answers "certainly no limit". While it is not loaded (first use, a reload
in flight, the engine's listener lost) `unlimited` says False and the call takes the database
path as before; without an open engine on the pool there is no index at all. A limit set
through this process's `Budgets` counts at once; one set by another process counts for the
calls this process admits once the notification arrives (sent at commit, it usually arrives
well under a millisecond later).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from ..engine.mirror import Mirror, mirror_for
from .limits import Counter
from .queries import LOAD_LIMITS

__all__ = ["CHANNEL", "LimitIndex", "index_for"]

CHANNEL = "threadline_budgets"  # what the trigger of migration 0006 notifies

Limit = tuple[str, str, str]


def _limit(row: asyncpg.Record) -> Limit:
    return (row[0], row[1], row[2])


def index_for(pool: asyncpg.Pool) -> LimitIndex | None:
    """The limit index of the open engine on this pool (one per engine), or None."""
    mirror = mirror_for(pool, CHANNEL, LOAD_LIMITS, _limit)
    return None if mirror is None else LimitIndex(mirror)


class LimitIndex:
    def __init__(self, mirror: Mirror[Limit]) -> None:
        self._mirror = mirror

    def unlimited(self, counters: Sequence[Counter]) -> bool:
        """True only when it is known that no limit applies to any of these counters: none
        declared in code, none set for their key or for their kind's `*`."""
        limits = self._mirror.keys()
        if limits is None:
            return False
        for c in counters:
            if c.declared_usd is not None:
                return False
            if (c.kind, c.key, c.period) in limits or (c.kind, "*", c.period) in limits:
                return False
        return True

    def added(self, kind: str, key: str, period: str) -> None:
        """A limit this process just set (its own next call sees it without waiting)."""
        self._mirror.add((kind, key, period))
