"""Wakes the readers of a session's event log when any process appends to it (LISTEN)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict

import asyncpg

from .. import db
from ..sessions.events import CHANNEL

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._closing = False

    async def start(self) -> None:
        self._conn = await db.connect(self._url)
        await self._conn.add_listener(CHANNEL, self._on_notify)  # type: ignore[arg-type]
        self._conn.add_termination_listener(self._on_lost)

    async def stop(self) -> None:
        self._closing = True
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    def subscribe(self, session_id: str) -> asyncio.Event:
        signal = asyncio.Event()
        self._waiters[session_id].add(signal)
        return signal

    def unsubscribe(self, session_id: str, signal: asyncio.Event) -> None:
        waiters = self._waiters.get(session_id)
        if waiters is not None:
            waiters.discard(signal)
            if not waiters:
                del self._waiters[session_id]

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        for session_id in json.loads(payload):
            for signal in self._waiters.get(session_id, ()):
                signal.set()

    def _on_lost(self, conn: object) -> None:
        if self._closing:
            return
        log.warning("lost the event listener connection; reconnecting")
        asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        while not self._closing:
            with contextlib.suppress(Exception):
                await self.start()
                for waiters in self._waiters.values():  # re-read: events may have been missed
                    for signal in waiters:
                        signal.set()
                return
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
