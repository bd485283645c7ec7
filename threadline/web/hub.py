"""Hands each committed session event to the readers of its session: events this process
wrote straight from its event log, other processes' from their NOTIFYs (LISTEN). Readers
that ask for it also get this process's answer pieces live, before they are logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable

import asyncpg

from .. import db
from ..sessions.events import CHANNEL, Committed, EventLog, Live, frame_text

log = logging.getLogger(__name__)


# A reader that has heard nothing for this long re-reads the log: a lost notification costs
# seconds, never an event.
QUIET_CHECK_S = 5.0


class Subscription:
    """One reader's view of a session: committed events (`inbox`), a `wake` signal, and
    `stale`, set (with `wake`) when nothing came for a while and the log should be read."""

    def __init__(self, live: bool = False) -> None:
        self.wake = asyncio.Event()
        self.inbox: list[Committed] = []
        # Answer pieces from this process's log not yet logged (`EventLog.watch_live`), for
        # a reader that asked for them; each also comes in `inbox` once committed.
        self.live: list[Live] | None = [] if live else None
        # Takes a live piece at once, if it can (True: taken, not to be queued in `live`).
        self.direct: Callable[[Live], bool] | None = None
        self.stale = False
        self.heard = False  # anything delivered since the hub last looked

    def take(self, cursor: int) -> tuple[list[Committed], bool]:
        """The events that follow `cursor` without a gap (each with its frame's text), and
        whether the log must be read (a gap, or an event too large to have come whole)."""
        entries, self.inbox = self.inbox, []
        if len(entries) > 1:
            entries.sort(key=_seq)
        frames: list[Committed] = []
        for entry in entries:
            if entry.seq <= cursor:
                continue
            if entry.seq != cursor + 1 or entry.text is None:
                return frames, True
            frames.append(entry)
            cursor = entry.seq
        return frames, False


def _seq(entry: Committed) -> int:
    return entry.seq


class Hub:
    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[Subscription]] = defaultdict(set)
        self._closing = False
        self._local: dict[str, EventLog] = {}  # origin -> a log that hands us its events
        self._checker: asyncio.Task[None] | None = None

    def attach(self, events: EventLog) -> None:
        """Take `events`' commits from it directly, not back from the database."""
        self._local[events.origin] = events
        events.listen(self.deliver)
        events.watch_live(self.deliver_live)

    async def start(self) -> None:
        self._conn = await db.connect(self._url)
        await self._conn.add_listener(CHANNEL, self._on_notify)  # type: ignore[arg-type]
        self._conn.add_termination_listener(self._on_lost)
        if self._checker is None:
            self._checker = asyncio.get_running_loop().create_task(self._check_quiet())

    async def stop(self) -> None:
        self._closing = True
        if self._checker is not None:
            self._checker.cancel()
        for events in self._local.values():
            events.unlisten(self.deliver)
            events.unwatch_live(self.deliver_live)
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    @property
    def listening(self) -> bool:
        """Whether other processes' events reach this one now (its LISTEN connection)."""
        return self._conn is not None and not self._conn.is_closed()

    def subscribe(self, session_id: str, *, live: bool = False) -> Subscription:
        """A reader of `session_id`'s events; `live`: its answer pieces before they are
        logged, too (see `Subscription.live`)."""
        sub = Subscription(live)
        self._waiters[session_id].add(sub)
        return sub

    def unsubscribe(self, session_id: str, sub: Subscription) -> None:
        waiters = self._waiters.get(session_id)
        if waiters is not None:
            waiters.discard(sub)
            if not waiters:
                del self._waiters[session_id]

    def deliver(self, events: list[Committed]) -> None:
        waiters = self._waiters
        for event in events:
            for sub in waiters.get(event.session_id, ()):
                sub.inbox.append(event)
                if not (event.live and sub.live is not None):
                    sub.heard = True
                    sub.wake.set()
                # else: it had it live; the copy only moves its cursor, at its next wake

    def deliver_live(self, piece: Live) -> bool:
        """Hand a live piece to the session's readers that take them; whether any did."""
        taken = False
        for sub in self._waiters.get(piece.session_id, ()):
            if sub.live is not None:
                taken = sub.heard = True
                if sub.direct is None or not sub.direct(piece):
                    sub.live.append(piece)
                    sub.wake.set()
        return taken

    async def _check_quiet(self) -> None:
        """One timer for all readers (not one per wait): wake those that heard nothing."""
        while True:
            await asyncio.sleep(QUIET_CHECK_S)
            for waiters in list(self._waiters.values()):
                for sub in waiters:
                    if not sub.heard:
                        sub.stale = True
                        sub.wake.set()
                    sub.heard = False

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        origin, _, body = payload.partition(":")
        if origin in self._local or not self._waiters:  # ours, or no reader here to hand it
            return
        self.deliver(
            [
                Committed(sid, seq, type, None if data is None else frame_text(type, seq, data))
                for sid, seq, type, data in json.loads(body)
            ]
        )

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
