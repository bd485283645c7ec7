"""The engine's listener connection: NOTIFYs on its own channels and on those other layers watch.

One connection to PostgreSQL itself (LISTEN needs a session of its own, which a pooler in
transaction mode does not keep). It also holds the worker's session advisory lock: its death
drops the lock, which tells the other workers this one died (see `worker.py`). Lost, it is
replaced at once, retrying every 0.25 s at most (others count a worker that has not taken its
lock again within `queries.RELOCK_GRACE_S` of the server's start as dead), and every channel
is LISTENed again.

The engine listens on its own channels (`ENGINE_CHANNELS`); a layer above it registers a
channel it needs with `watch` — before the engine opens (LISTENed when it connects) or after
(LISTENed at once) — and learns from `hears` when notifications on it reach the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from .. import db
from . import queries
from .dbretry import log_loop_error

__all__ = ["ENGINE_CHANNELS", "Listener", "Watcher"]

log = logging.getLogger(__name__)

# The engine's own channels: runs to claim, runs done, new events, runs cancelled.
ENGINE_CHANNELS = ("threadline_work", "threadline_done", "threadline_events", "threadline_cancel")
# Called with a notification's payload, or None when notifications may have been missed.
Watcher = Callable[[str | None], None]


@dataclass
class _Session:
    """One listener connection, and the watched channels LISTENed on it so far."""

    conn: asyncpg.Connection
    heard: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one LISTEN at a time


class Listener:
    def __init__(
        self,
        on_engine_notify: Callable[[str, str], None],
        on_heard_again: Callable[[], None],
    ) -> None:
        self._on_engine_notify = on_engine_notify  # (channel, payload) of ENGINE_CHANNELS
        self._on_heard_again = on_heard_again  # reconnected: anything may have been missed
        self._watchers: dict[str, list[Watcher]] = defaultdict(list)
        self._session: _Session | None = None
        self._url = ""
        self._worker_id = 0
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()  # reconnecting, LISTENing a new channel

    @property
    def connection(self) -> asyncpg.Connection | None:
        return None if self._session is None else self._session.conn

    @property
    def listening(self) -> bool:
        """Whether the engine's own notifications reach this process now."""
        return self._session is not None and not self._session.conn.is_closed()

    def hears(self, channel: str) -> bool:
        """Whether notifications on `channel` reach this process now."""
        session = self._session
        if session is None or session.conn.is_closed():
            return False
        return channel in ENGINE_CHANNELS or channel in session.heard

    def watch(self, channel: str, watcher: Watcher) -> None:
        """Call `watcher` with each notification on `channel`, and with None whenever some
        may have been missed. The channel is LISTENed from now on: at once if connected,
        else when the connection is made, and again after every reconnection."""
        new = channel not in self._watchers and channel not in ENGINE_CHANNELS
        self._watchers[channel].append(watcher)
        if new and self.listening:
            self._spawn(self._catch_up(), f"threadline-listen-{channel}")

    def missed(self) -> None:
        """Tell every watcher that notifications may have been missed."""
        for watchers in list(self._watchers.values()):
            for watcher in watchers:
                watcher(None)

    async def connect(self, url: str, worker_id: int) -> None:
        """Open the connection (taking the worker's lock when `worker_id` is given)."""
        self._url, self._worker_id, self._closing = url, worker_id, False
        await self._listen()

    def stop(self) -> None:
        """The engine is closing: reconnect no more; watchers hear that they may miss some."""
        self._closing = True
        self.missed()
        for task in self._tasks:
            task.cancel()

    async def close(self) -> None:
        """Close the connection (releasing the worker's lock): after `stop`, once the
        worker has drained."""
        self._closing = True
        session, self._session = self._session, None
        if session is not None and not session.conn.is_closed():
            await session.conn.close()

    async def _listen(self) -> None:
        conn = await db.connect(self._url)
        try:
            if self._worker_id:
                # Session-level: held as long as this connection lives, released by its death.
                await conn.execute(queries.TAKE_WORKER_LOCK, self._worker_id)
            for channel in ENGINE_CHANNELS:
                await conn.add_listener(channel, self._on_notify)  # type: ignore[arg-type]
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_lost)  # type: ignore[arg-type]
        self._session = _Session(conn)
        await self._catch_up()

    async def _catch_up(self) -> None:
        """LISTEN on each watched channel the connection does not listen on yet."""
        session = self._session
        if session is None:
            return
        async with session.lock:
            for channel in [c for c in self._watchers if c not in ENGINE_CHANNELS]:
                if channel in session.heard or session.conn.is_closed():
                    continue
                try:
                    await session.conn.add_listener(channel, self._on_notify)  # type: ignore[arg-type]
                except Exception as exc:  # a lost connection: its replacement LISTENs again
                    log_loop_error(f"LISTEN {channel}", exc)
                    return
                session.heard.add(channel)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        if channel in ENGINE_CHANNELS:
            self._on_engine_notify(channel, payload)
        for watcher in self._watchers.get(channel, ()):
            watcher(payload)

    def _on_lost(self, conn: asyncpg.Connection) -> None:
        self.missed()
        if self._closing:
            return
        log.warning("lost the listener connection; reconnecting")
        self._spawn(self._reconnect(), "threadline-listener-reconnect")

    async def _reconnect(self) -> None:
        delay = 0.05
        while not self._closing:
            try:
                await self._listen()
            except Exception as exc:  # whatever it is, a worker without its lock looks dead
                log_loop_error("listener reconnect", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)
                continue
            # Anything may have happened while deaf: every waiter checks again.
            self.missed()
            self._on_heard_again()
            return

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
