"""A set of keys read from one table and kept in step with it through a NOTIFY channel.

Asking the database before every call whether a rare row exists (a budget limit on a scope,
a cooldown on a model) costs a round trip per call, for an answer that is nearly always no.
A process instead keeps the set of keys, and a trigger on the table notifies a channel at
every change: the mirror has the engine LISTEN on it (`Engine.watch`, the way a layer above
registers a channel it needs) and reloads the set in the background.

A mirror only ever vouches for a key's absence. While it is not loaded (first use, a reload in
flight, the channel not LISTENed yet, the engine's listener lost) `keys` says None and the
caller asks the database as before; without an open engine on the pool there is no mirror
at all. A change committed by another process counts once its notification arrives (sent at
commit, usually well under a millisecond later); one made through this process counts at once
if the caller `add`s it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import asyncpg

from .dbretry import DATABASE_ERRORS
from .engine import Engine, engine_of

__all__ = ["Mirror", "mirror_for"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

_MIRRORS: weakref.WeakKeyDictionary[Engine, dict[str, Mirror[Hashable]]] = (
    weakref.WeakKeyDictionary()
)


class Mirror(Generic[K]):
    def __init__(
        self, engine: Engine, channel: str, query: str, key: Callable[[asyncpg.Record], K]
    ) -> None:
        self._engine = weakref.ref(engine)
        self._channel = channel
        self._query = query
        self._key = key
        self._keys: set[K] | None = None  # None: unknown
        self._generation = 0  # bumped by every change heard: a load that raced one is stale
        self._loading: asyncio.Task[None] | None = None
        engine.watch(channel, self._changed)

    def keys(self) -> set[K] | None:
        """The keys the table has now, or None when that is not known (a load starts)."""
        keys = self._keys
        if keys is None:
            self._load()
        return keys

    def add(self, key: K) -> None:
        """A row this process just wrote (its own next call sees it without waiting)."""
        if self._keys is not None:
            self._keys.add(key)

    def _changed(self, payload: str | None) -> None:
        self._generation += 1
        self._keys = None

    def _load(self) -> None:
        engine = self._engine()
        if engine is None or not engine.hears(self._channel):
            return  # deaf: a load now could miss a change; ask the database meanwhile
        if self._loading is None or self._loading.done():
            self._loading = asyncio.get_running_loop().create_task(
                self._fetch(engine.pool), name=f"threadline-mirror-{self._channel}"
            )

    async def _fetch(self, pool: asyncpg.Pool) -> None:
        generation = self._generation
        try:
            async with pool.acquire() as conn:
                rows = await conn.fetch(self._query)
        except DATABASE_ERRORS as exc:
            log.debug("%s not mirrored: %s", self._channel, exc)
            return
        if generation == self._generation:
            self._keys = {self._key(row) for row in rows}


def mirror_for(
    pool: asyncpg.Pool, channel: str, query: str, key: Callable[[asyncpg.Record], K]
) -> Mirror[K] | None:
    """The mirror of `channel`'s table for the open engine on this pool (one per engine and
    channel), or None when no engine is open on it."""
    engine = engine_of(pool)
    if engine is None:
        return None
    mirrors = _MIRRORS.setdefault(engine, {})
    mirror = mirrors.get(channel)
    if mirror is None:
        mirror = mirrors[channel] = Mirror(engine, channel, query, key)
    return mirror  # type: ignore[return-value]
