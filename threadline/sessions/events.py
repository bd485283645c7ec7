"""The session event log: every frame a client sees, numbered per session, durable.

Turns append events (`message.delta`, `message.end`, ...) through `EventLog.append`, which
group-commits them: all events queued while a write is in flight go in the next statement,
numbered from each session's counter in that same statement, followed by NOTIFYs that carry
the events themselves (a reader makes each frame's text from its type, number and data).
Readers (WebSocket and SSE handlers) get each frame once it is committed: in the writing
process straight from the log's listeners, in every other process from the NOTIFY; they read
the log only to fill a gap, so a client that reconnects with `resume {after_seq}` gets every
missed event exactly once, in order. An answer's beginning and pieces may also go to the
writing process's WebSocket readers before they are committed (`watch_live`, ADR 0014): they
place themselves in their answer (`Piece`), so a reader can skip their logged copies.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
from typing import Any

import asyncpg

from ..engine.dbretry import with_db_retry
from . import queries as q
from .along import Along
from .frames import (
    ANSWER_TYPES,
    CommitListener,
    Committed,
    Live,
    LiveListener,
    Piece,
    SessionEvent,
    encode,
    frame_text,
    live_text,
    own_fields,
    piece_of,
)
from .pending import Pending, Queued, join

__all__ = [
    "ANSWER_TYPES",
    "CHANNEL",
    "Along",
    "Committed",
    "EventLog",
    "Live",
    "Piece",
    "SessionEvent",
    "encode",
    "frame_text",
    "piece_of",
    "read_events",
]

log = logging.getLogger(__name__)

CHANNEL = "threadline_session_events"
# Pieces that readers in this process took live wait up to this long for the log, joining
# their answer's queued piece meanwhile: fewer, larger rows (see `EventLog.post`).
LIVE_LOG_HOLD_S = 0.25


class EventLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._queue: list[Pending] = []
        self._tail: dict[str, int] = {}  # session -> index of its last event in the queue
        self._task: asyncio.Task[None] | None = None
        # Tags this log's notifications, so a reader it hands frames to directly can skip
        # them when they come back from the database.
        self.origin = secrets.token_hex(6)
        self._listeners: list[CommitListener] = []
        self._live: tuple[LiveListener, ...] = ()  # a new tuple on each change: no copy a token
        self._unseen: dict[str, int] = {}  # session -> its queued or written, unseen events
        self._unheld = 0  # queued events whose write must not wait
        self._hold: asyncio.Future[None] | None = None  # set: write now
        self._draining = 0
        self._writing: set[str] = set()  # the sessions of the batch being written

    def listen(self, listener: CommitListener) -> None:
        """Call `listener` with each batch of events once it is committed, in order."""
        self._listeners.append(listener)

    def unlisten(self, listener: CommitListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def watch_live(self, listener: LiveListener) -> None:
        """Also call `listener` with each answer's event that can go out before it is
        logged: when every earlier event of its session from this log is committed (and
        handed to the commit listeners) or went out live itself. Its committed copy
        follows, with the same `Piece`, for the listener to recognise."""
        self._live = (*self._live, listener)

    def unwatch_live(self, listener: LiveListener) -> None:
        self._live = tuple(known for known in self._live if known != listener)

    def append(
        self, session_id: str, type: str, data: dict[str, Any], key: str | None = None
    ) -> asyncio.Future[int]:
        """Queue an event; the future gives its sequence number once it is durable. With a
        `key`, the event is logged only if none with that key is in the session's log (a
        replayed turn's `message.end`): the future then gives 0, and nothing is numbered."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_observe)
        self._enqueue(Pending(session_id, type, own_fields(data), fut, key=key))
        return fut

    def along(self, session_id: str, *, take_queued: bool = False) -> Along | None:
        """A handle for an event of `session_id` that the caller writes in a statement of
        its own, committed with rows of its own (a user's message and its `message.user`
        event; an answer and its `message.end`): one commit, not two. None while the log is
        writing events of the session, or has some not yet handed to its readers: one
        written beside them could overtake them. With `take_queued`, the session's queued
        events (an answer's pieces held for the log) are taken out of the queue, for the
        caller's statement to write first (`Along.queued`); else any queued event means None.
        Until the handle is closed, the session's answer pieces do not go out live, as
        behind any event of the log not yet committed."""
        if session_id in self._writing:
            return None
        taken: list[Pending] = []
        if session_id in self._tail:
            if not take_queued:
                return None
            taken = self._take_session(session_id)
        elif self._unseen.get(session_id):
            return None
        self._unseen[session_id] = self._unseen.get(session_id, 0) + 1
        return Along(self, session_id, taken)

    def _take_session(self, session_id: str) -> list[Pending]:
        taken = [e for e in self._queue if e.session_id == session_id]
        kept = [e for e in self._queue if e.session_id != session_id]
        self._queue = kept
        self._tail = {e.session_id: i for i, e in enumerate(kept)}
        self._unheld -= sum(not e.held for e in taken)
        return taken

    def _put_back(self, taken: list[Pending]) -> None:
        """Events taken for a statement that failed: queued again, first, to be written."""
        self._queue = taken + self._queue
        self._tail = {e.session_id: i for i, e in enumerate(self._queue)}
        self._unheld += sum(not e.held for e in taken)
        if self._hold is not None:
            _wake(self._hold)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def post(
        self, session_id: str, type: str, data: dict[str, Any], key: str | None = None
    ) -> None:
        """Queue an event nobody waits for (a streamed token): no future, same order. `key`:
        as for `append` (an answer's pieces have none).

        A `message.delta` that finds the session's previous event still queued, a delta of
        the same turn made `JOIN_AFTER_S` or more before it, joins it (its text appended; the
        first one's `ts` and other fields kept): when commits fall behind the model, a
        session's tokens go out in fewer, larger frames instead of falling further behind.
        Nothing changes while they keep up, nor for deltas made together (a cached answer
        replayed word by word).

        A delta that readers in this process took live joins the queued piece it continues,
        whenever it was made: those readers have it, and the log keeps one row for the run of
        pieces. Such pieces wait up to `LIVE_LOG_HOLD_S` for their write while nothing else
        is queued (anything else writes them at once, in order): at 20 tokens/s about five
        pieces make one row, and readers in other processes get them in that rhythm."""
        data = own_fields(data)
        if key is not None:
            if type in ANSWER_TYPES:
                raise ValueError("an answer's pieces are placed by offset, not by key")
            self._enqueue(Pending(session_id, type, data, None, key=key))
            return
        live: tuple[Piece, str, bool] | None = None
        if type in ANSWER_TYPES and self._live and not self._unseen.get(session_id):
            live = self._go_live(session_id, type, data)
        if type == "message.delta":
            last = self._tail.get(session_id)
            if last is not None and join(self._queue[last], data, live):
                return
            data = dict(data)  # ours to extend
        if live is None:
            self._enqueue(Pending(session_id, type, data, None))
        else:
            self._enqueue(Pending(session_id, type, data, None, *live))

    def _go_live(
        self, session_id: str, type: str, data: dict[str, Any]
    ) -> tuple[Piece, str, bool] | None:
        """Hand an answer's event to the live listeners: its place, its data as JSON and
        whether a reader took it, or None if it cannot go."""
        piece = piece_of(type, data)
        if piece is None:  # not placed in its answer: readers could not join it up
            return None
        encoded = encode(data)
        live = Live(session_id, type, piece, live_text(type, encoded))
        taken = False
        for listener in self._live:
            try:
                taken = bool(listener(live)) or taken
            except Exception:
                log.exception("a live session event listener failed")
        return piece, encoded, taken

    def _enqueue(self, entry: Pending) -> None:
        if entry.live is None:
            self._unseen[entry.session_id] = self._unseen.get(entry.session_id, 0) + 1
        loop = asyncio.get_running_loop()
        entry.queued_at = loop.time()
        if not entry.held:
            self._unheld += 1
            if self._hold is not None:
                _wake(self._hold)
        self._tail[entry.session_id] = len(self._queue)
        self._queue.append(entry)
        if self._task is None:
            self._task = loop.create_task(self._run())

    async def drain(self) -> None:
        """Wait until everything queued is written (held pieces too, without their wait)."""
        self._draining += 1
        try:
            while self._task is not None:
                if self._hold is not None:
                    _wake(self._hold)
                await asyncio.wait([self._task])
        finally:
            self._draining -= 1

    async def _run(self) -> None:
        try:
            while self._queue:
                await asyncio.sleep(0)  # let the events that are ready now join the batch
                if self._queue and not self._unheld:
                    await self._held()
                pending = self._take()
                if not pending:  # a session's events were taken meanwhile (`along`)
                    continue
                batch = [
                    (
                        e.session_id,
                        e.type,
                        encode(e.data) if e.encoded is None else e.encoded,
                        e.key,
                        e.fut,
                    )
                    for e in pending
                ]
                self._writing = {e.session_id for e in pending}
                try:
                    seqs = await with_db_retry(
                        functools.partial(self._write, batch), what="session events"
                    )
                except Exception as exc:
                    log.error("could not write %d session events: %s", len(batch), exc)
                    for *_, fut in batch:
                        if fut is not None and not fut.done():
                            fut.set_exception(exc)
                    self._seen(pending)
                    continue
                finally:
                    self._writing = set()
                for (*_, fut), seq in zip(batch, seqs, strict=True):
                    if fut is not None and not fut.done():
                        fut.set_result(seq)
                self._tell(pending, batch, seqs)
                self._seen(pending)
        finally:
            self._task = None

    async def _held(self) -> None:
        """Wait while only pieces readers here have are queued: until the oldest has waited
        `LIVE_LOG_HOLD_S`, or anything else is queued."""
        if self._draining:
            return
        loop = asyncio.get_running_loop()
        self._hold = hold = loop.create_future()
        timer = loop.call_at(self._queue[0].queued_at + LIVE_LOG_HOLD_S, _wake, hold)
        try:
            await hold
        finally:
            timer.cancel()
            self._hold = None

    def _take(self) -> list[Pending]:
        """The next batch: the whole queue once its oldest event has waited its time, else
        the sessions with an event that must not wait (all of each one's, in order); the
        sessions with only held pieces stay queued."""
        queue = self._queue
        now = asyncio.get_running_loop().time()
        if not self._unheld or self._draining or queue[0].queued_at + LIVE_LOG_HOLD_S <= now:
            self._queue, self._tail, self._unheld = [], {}, 0
            return queue
        urgent = {e.session_id for e in queue if not e.held}
        taken: list[Pending] = []
        kept: list[Pending] = []
        tail: dict[str, int] = {}
        for entry in queue:
            if entry.session_id in urgent:
                taken.append(entry)
            else:
                tail[entry.session_id] = len(kept)
                kept.append(entry)
        self._queue, self._tail, self._unheld = kept, tail, 0
        return taken

    def _seen(self, pending: list[Pending]) -> None:
        """Readers have these events now (or never will): the sessions' next deltas may go
        out live again."""
        unseen = self._unseen
        for entry in pending:
            if entry.live is None:
                left = unseen[entry.session_id] - 1
                if left:
                    unseen[entry.session_id] = left
                else:
                    del unseen[entry.session_id]

    def _tell(self, pending: list[Pending], batch: list[Queued], seqs: list[int]) -> None:
        if not self._listeners:
            return
        committed = [
            Committed(
                e.session_id,
                seq,
                e.type,
                frame_text(e.type, seq, text),
                piece_of(e.type, e.data) if e.live is None else e.live,
                e.live is not None,
            )
            for e, (_, _, text, _, _), seq in zip(pending, batch, seqs, strict=True)
            if seq > 0
        ]
        for listener in list(self._listeners):
            try:
                listener(committed)
            except Exception:
                log.exception("a session event listener failed")

    def _closed(self, session_id: str) -> None:
        left = self._unseen.get(session_id, 0) - 1
        if left > 0:
            self._unseen[session_id] = left
        else:
            self._unseen.pop(session_id, None)

    def _along_written(self, entries: list[Pending], seqs: list[int]) -> None:
        """Events an `Along` caller's statement committed, with their numbers (0: logged
        before under its key)."""
        batch: list[Queued] = []
        for entry, seq in zip(entries, seqs, strict=True):
            text = encode(entry.data) if entry.encoded is None else entry.encoded
            batch.append((entry.session_id, entry.type, text, entry.key, entry.fut))
            if entry.fut is not None and not entry.fut.done():
                entry.fut.set_result(seq)
        self._tell(entries, batch, seqs)
        self._seen(entries)

    @staticmethod
    def pending(session_id: str, type: str, data_json: str, key: str | None) -> Pending:
        """A caller's own event, already encoded, for `Along.written`."""
        return Pending(session_id, type, {}, None, encoded=data_json, key=key)

    async def _write(self, batch: list[Queued]) -> list[int]:
        sessions, types, datas, keys = ([row[i] for row in batch] for i in range(4))
        async with self._pool.acquire() as conn:
            if any(key is not None for key in keys):
                row = await conn.fetchrow(
                    q.APPEND_KEYED, sessions, types, datas, CHANNEL, self.origin, keys
                )
            else:
                row = await conn.fetchrow(q.APPEND, sessions, types, datas, CHANNEL, self.origin)
        return list(row[0]) if row is not None and row[0] is not None else [-1] * len(batch)


async def read_events(
    conn: Any, session_id: str, after_seq: int, limit: int = 500
) -> list[SessionEvent]:
    rows = await conn.fetch(q.READ_EVENTS, session_id, after_seq, limit)
    return [SessionEvent(r["seq"], r["type"], json.loads(r["data"]), r["at"]) for r in rows]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _observe(fut: asyncio.Future[int]) -> None:
    if not fut.cancelled():
        fut.exception()
