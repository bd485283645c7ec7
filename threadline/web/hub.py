"""Wakes the readers of a session's event log when any process appends to it (LISTEN)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from typing import Any

import asyncpg

from .. import db
from ..sessions.events import CHANNEL

log = logging.getLogger(__name__)


class Subscription:
    """One reader's view of a session: notified events (`inbox`) and a `wake` signal."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.inbox: list[dict[str, Any]] = []

    def take(self, cursor: int) -> tuple[list[dict[str, Any]], bool]:
        """The notified frames that follow `cursor` without a gap, and whether the log must
        be read (a gap, or an event too large to ride on the notification)."""
        entries, self.inbox = sorted(self.inbox, key=lambda e: e["q"]), []
        frames: list[dict[str, Any]] = []
        for entry in entries:
            if entry["q"] <= cursor:
                continue
            if entry["q"] != cursor + 1 or entry["d"] is None:
                return frames, True
            frames.append({**entry["d"], "type": entry["t"], "seq": entry["q"]})
            cursor = entry["q"]
        return frames, False


class Hub:
    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[Subscription]] = defaultdict(set)
        self._closing = False

    async def start(self) -> None:
        self._conn = await db.connect(self._url)
        await self._conn.add_listener(CHANNEL, self._on_notify)  # type: ignore[arg-type]
        self._conn.add_termination_listener(self._on_lost)

    async def stop(self) -> None:
        self._closing = True
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    def subscribe(self, session_id: str) -> Subscription:
        sub = Subscription()
        self._waiters[session_id].add(sub)
        return sub

    def unsubscribe(self, session_id: str, sub: Subscription) -> None:
        waiters = self._waiters.get(session_id)
        if waiters is not None:
            waiters.discard(sub)
            if not waiters:
                del self._waiters[session_id]

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        for entry in json.loads(payload):
            for sub in self._waiters.get(entry["s"], ()):
                sub.inbox.append(entry)
                sub.wake.set()

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
                    for sub in waiters:
                        sub.wake.set()
                return
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
