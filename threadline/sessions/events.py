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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import orjson

from ..engine.dbretry import with_db_retry

log = logging.getLogger(__name__)

CHANNEL = "threadline_session_events"
# A delta joins the session's queued one when it was made this long after it: the log has
# fallen behind the model (at 20 tokens/s a session's deltas are 50 ms apart, a commit ~1 ms).
JOIN_AFTER_S = 0.02
# Pieces that readers in this process took live wait up to this long for the log, joining
# their answer's queued piece meanwhile: fewer, larger rows (see `EventLog.post`).
LIVE_LOG_HOLD_S = 0.25


# Of `batch` (session_id, type, data, key, ord), the events the log keeps: those without a
# key, and the first of each key not logged yet (a replayed turn's `message.end` is not).
# A writer racing this statement with the same key (a process presumed dead that was not)
# is stopped by the unique index: that event is dropped, leaving its number unused.
FRESH = """fresh AS (
    SELECT b.* FROM batch b
    WHERE b.key IS NULL
       OR (NOT EXISTS (SELECT 1 FROM threadline.session_events x
                       WHERE x.session_id = b.session_id AND x.key = b.key)
           AND b.ord = (SELECT min(o.ord) FROM batch o
                        WHERE o.session_id = b.session_id AND o.key = b.key))
)"""


def logged_events(channel: str, origin: str, keyed: bool = False) -> str:
    """The CTEs that log `numbered` (session_id, type, data as JSON text, seq, key): inserted,
    and riding on NOTIFYs on `channel` behind `origin` (SQL expressions, parameters): small
    ones whole, large ones as a pointer (null data), eight to a notification to stay below
    its 8000-byte limit even escaped. Readers in other processes forward them without a
    query; the data goes as the writer encoded it (no jsonb to text again). The statement
    must read `notice` (`SELECT count(*) FROM notice`), or no NOTIFY is sent. `keyed`: some
    events may carry a key (`FRESH` chose them; the unique index stops a racing writer): an
    insert that checks for conflicts costs more, so only such statements do."""
    keyed_rows = (
        """, written_keyed AS (
    INSERT INTO threadline.session_events (session_id, seq, type, data, key)
    SELECT session_id, seq, type, data::jsonb, key FROM numbered WHERE key IS NOT NULL
    ON CONFLICT (session_id, key) WHERE key IS NOT NULL DO NOTHING
)"""
        if keyed
        else ""
    )
    return f"""written AS (
    INSERT INTO threadline.session_events (session_id, seq, type, data, key)
    SELECT session_id, seq, type, data::jsonb, key FROM numbered WHERE key IS NULL
){keyed_rows}, notice AS (
    SELECT pg_notify({channel}, {origin} || ':' || json_agg(json_build_array(session_id, seq,
               type, CASE WHEN octet_length(data) <= 400 THEN data END)
           ORDER BY session_id, seq)::text)
    FROM (SELECT n.*, (row_number() OVER (ORDER BY session_id, seq) - 1) / 8 AS grp
          FROM numbered n) grouped
    GROUP BY grp
)"""


def _append(keyed: bool) -> str:
    """The log's statement for a batch; `keyed`: some events carry a key (see `FRESH`). A
    batch of pieces alone (the usual one) skips the keys' lookups."""
    batch = (
        "SELECT e.session_id, e.type, e.data, e.key, e.ord FROM unnest($1::text[], $2::text[], "
        "$3::text[], $6::text[]) WITH ORDINALITY AS e(session_id, type, data, key, ord)"
        if keyed
        else "SELECT e.session_id, e.type, e.data, NULL::text AS key, e.ord FROM unnest("
        "$1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS e(session_id, type, data, ord)"
    )
    fresh = FRESH if keyed else "fresh AS (SELECT * FROM batch)"
    # 0: logged before under its key; -1: no such session.
    missing = (
        "CASE WHEN EXISTS (SELECT 1 FROM threadline.sessions s WHERE s.id = b.session_id) "
        "THEN 0 ELSE -1 END"
        if keyed
        else "-1"
    )
    return f"""
WITH batch AS ({batch}), {fresh}, counts AS (
    SELECT session_id, count(*) AS n FROM fresh GROUP BY session_id
), bumped AS (
    -- The ANY lets the planner find the sessions by their key (a join alone reads the whole
    -- table while it is small, and the log writes on every token). Only event_seq changes,
    -- no indexed column: the update can stay on its page (HOT).
    UPDATE threadline.sessions s SET event_seq = s.event_seq + c.n
    FROM counts c WHERE s.id = ANY (ARRAY(SELECT session_id FROM counts)) AND s.id = c.session_id
    RETURNING s.id, s.event_seq - c.n AS base
), numbered AS (
    SELECT b.session_id, b.type, b.data, b.key, b.ord,
           x.base + row_number() OVER (PARTITION BY b.session_id ORDER BY b.ord) AS seq
    FROM fresh b JOIN bumped x ON x.id = b.session_id
), {logged_events("$4", "$5", keyed)}
-- Each event's number in the order given, once the notices are made.
SELECT array_agg(coalesce(n.seq, {missing}) ORDER BY b.ord), (SELECT count(*) FROM notice)
FROM batch b LEFT JOIN numbered n ON n.ord = b.ord
"""


_APPEND = _append(keyed=False)
_APPEND_KEYED = _append(keyed=True)

READ = """
SELECT seq, type, data::text AS data, at FROM threadline.session_events
WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""


@dataclass(frozen=True)
class SessionEvent:
    seq: int
    type: str
    data: dict[str, Any]
    at: datetime

    def frame(self) -> dict[str, Any]:
        """The frame a client receives: the event's fields plus `type` and `seq`."""
        return {**self.data, "type": self.type, "seq": self.seq}


class Committed(NamedTuple):
    """A committed event as a reader forwards it: `text` is its frame as JSON (what
    `SessionEvent.frame` gives), or None when it was too large to ride on a notification
    and must be read from the log. `piece` places an answer's start or piece when the
    writer knows it (events this process wrote): see `Piece`."""

    session_id: str
    seq: int
    type: str
    text: str | None
    piece: Piece | None = None
    live: bool = False  # it went out live before (see `EventLog.watch_live`)


class Piece(NamedTuple):  # a tuple: one is made per streamed token
    """Where an answer's event sits in the answer: a `message.delta` covers code points
    [offset, end) of its turn's text since the answer (re)started; a `message.start` or
    `message.restart` begins it (offset = end = the code points it keeps, its `keep`),
    `started` (its `ts`) telling one beginning from another."""

    turn_id: str
    offset: int
    end: int
    started: float | None = None


class Live(NamedTuple):
    """An answer's event (`message.start`, `.restart`, `.delta`) handed to readers in this
    process before it is logged: `text` is its frame as JSON, without a `seq` (it has none
    yet); its `Committed` copy follows with the same `Piece`."""

    session_id: str
    type: str
    piece: Piece
    text: str


CommitListener = Callable[[list[Committed]], None]
LiveListener = Callable[[Live], bool | None]  # True: some reader took it
ANSWER_TYPES = frozenset({"message.start", "message.restart", "message.delta"})


def piece_of(type: str, data: dict[str, Any]) -> Piece | None:
    """The place of an answer's event in its answer, when its data tells it."""
    if type not in ANSWER_TYPES:
        return None
    turn_id = data.get("turn_id")
    if not isinstance(turn_id, str):
        return None
    if type != "message.delta":
        started, keep = data.get("ts"), data.get("keep", 0)
        keep = keep if isinstance(keep, int) and not isinstance(keep, bool) and keep > 0 else 0
        return Piece(turn_id, keep, keep, started if isinstance(started, float) else None)
    offset, text = data.get("offset"), data.get("text")
    if not isinstance(offset, int) or isinstance(offset, bool) or not isinstance(text, str):
        return None
    return Piece(turn_id, offset, offset + len(text))


# session, type, data as JSON, key, who waits for the number
_Queued = tuple[str, str, str, "str | None", "asyncio.Future[int] | None"]


@dataclass(slots=True)
class _Pending:
    """A queued event. `live`: where it sits in its answer if it went out live (if not,
    until it is committed its session's later events cannot go out live: frames stay in
    order); `encoded`: its data as JSON, kept from going live, until a later piece joins it."""

    session_id: str
    type: str
    data: dict[str, Any]
    fut: asyncio.Future[int] | None
    live: Piece | None = None
    encoded: str | None = None
    held: bool = False  # a reader here took it live: its write may wait (LIVE_LOG_HOLD_S)
    queued_at: float = 0.0  # loop time
    key: str | None = None  # logged once per session under this key (see `append`)


def _own_fields(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data without `type` and `seq`: the frame's own fields win, as in frame()."""
    if "type" in data or "seq" in data:
        return {k: v for k, v in data.items() if k not in ("type", "seq")}
    return data


def encode(data: dict[str, Any]) -> str:
    """An event's data as JSON text (orjson: the log encodes every streamed token)."""
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()


def live_text(type: str, data_json: str) -> str:
    """A frame's JSON text before the event has a number (see `Live`)."""
    head = f'{{"type":{_type_json(type)}'
    return head + "}" if data_json == "{}" else head + "," + data_json[1:]


def frame_text(type: str, seq: int, data_json: str) -> str:
    """`SessionEvent.frame()` as JSON text, from the event's data already encoded (an
    object without `type` or `seq` keys): no second encoding per frame."""
    head = f'{{"type":{_type_json(type)},"seq":{seq}'
    return head + "}" if data_json == "{}" else head + "," + data_json[1:]


@functools.lru_cache(maxsize=256)
def _type_json(type: str) -> str:
    return json.dumps(type)


class EventLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._queue: list[_Pending] = []
        self._tail: dict[str, int] = {}  # session -> index of its last event in the queue
        self._task: asyncio.Task[None] | None = None
        # Tags this log's notifications, so a reader it hands frames to directly can skip
        # them when they come back from the database.
        self.origin = secrets.token_hex(6)
        self._listeners: list[CommitListener] = []
        self._live: list[LiveListener] = []
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
        self._live.append(listener)

    def unwatch_live(self, listener: LiveListener) -> None:
        if listener in self._live:
            self._live.remove(listener)

    def append(
        self, session_id: str, type: str, data: dict[str, Any], key: str | None = None
    ) -> asyncio.Future[int]:
        """Queue an event; the future gives its sequence number once it is durable. With a
        `key`, the event is logged only if none with that key is in the session's log (a
        replayed turn's `message.end`): the future then gives 0, and nothing is numbered."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_observe)
        self._enqueue(_Pending(session_id, type, _own_fields(data), fut, key=key))
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
        taken: list[_Pending] = []
        if session_id in self._tail:
            if not take_queued:
                return None
            taken = self._take_session(session_id)
        elif self._unseen.get(session_id):
            return None
        self._unseen[session_id] = self._unseen.get(session_id, 0) + 1
        return Along(self, session_id, taken)

    def _take_session(self, session_id: str) -> list[_Pending]:
        taken = [e for e in self._queue if e.session_id == session_id]
        kept = [e for e in self._queue if e.session_id != session_id]
        self._queue = kept
        self._tail = {e.session_id: i for i, e in enumerate(kept)}
        self._unheld -= sum(not e.held for e in taken)
        return taken

    def _put_back(self, taken: list[_Pending]) -> None:
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
        data = _own_fields(data)
        if key is not None:
            if type in ANSWER_TYPES:
                raise ValueError("an answer's pieces are placed by offset, not by key")
            self._enqueue(_Pending(session_id, type, data, None, key=key))
            return
        live: tuple[Piece, str, bool] | None = None
        if type in ANSWER_TYPES and self._live and not self._unseen.get(session_id):
            live = self._go_live(session_id, type, data)
        if type == "message.delta":
            last = self._tail.get(session_id)
            if last is not None and self._join(self._queue[last], data, live):
                return
            data = dict(data)  # ours to extend
        if live is None:
            self._enqueue(_Pending(session_id, type, data, None))
        else:
            self._enqueue(_Pending(session_id, type, data, None, *live))

    @staticmethod
    def _join(entry: _Pending, data: dict[str, Any], live: tuple[Piece, str, bool] | None) -> bool:
        """Append a delta to the session's queued `entry` if they make one piece."""
        queued = entry.data
        if not (
            entry.type == "message.delta"
            and entry.fut is None
            and (entry.live is None) is (live is None)
            and queued.keys() == data.keys()
            and queued.get("turn_id") == data.get("turn_id")
            and isinstance(queued.get("text"), str)
            and isinstance(data.get("text"), str)
        ):
            return False
        if live is not None and entry.live is not None and entry.held and live[2]:
            if entry.live.end != live[0].offset:
                return False
        elif entry.held or not (
            isinstance(queued.get("ts"), float)
            and isinstance(data.get("ts"), float)
            and data["ts"] - queued["ts"] >= JOIN_AFTER_S
        ):
            return False
        queued["text"] += data["text"]
        entry.encoded = None
        if entry.live is not None and live is not None:
            entry.live = Piece(entry.live.turn_id, entry.live.offset, live[0].end)
        return True

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
        for listener in list(self._live):
            try:
                taken = bool(listener(live)) or taken
            except Exception:
                log.exception("a live session event listener failed")
        return piece, encoded, taken

    def _enqueue(self, entry: _Pending) -> None:
        if entry.live is None:
            self._unseen[entry.session_id] = self._unseen.get(entry.session_id, 0) + 1
        entry.queued_at = asyncio.get_running_loop().time()
        if not entry.held:
            self._unheld += 1
            if self._hold is not None:
                _wake(self._hold)
        self._tail[entry.session_id] = len(self._queue)
        self._queue.append(entry)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

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

    def _take(self) -> list[_Pending]:
        """The next batch: the whole queue once its oldest event has waited its time, else
        the sessions with an event that must not wait (all of each one's, in order); the
        sessions with only held pieces stay queued."""
        queue = self._queue
        now = asyncio.get_running_loop().time()
        if not self._unheld or self._draining or queue[0].queued_at + LIVE_LOG_HOLD_S <= now:
            self._queue, self._tail, self._unheld = [], {}, 0
            return queue
        urgent = {e.session_id for e in queue if not e.held}
        taken: list[_Pending] = []
        kept: list[_Pending] = []
        tail: dict[str, int] = {}
        for entry in queue:
            if entry.session_id in urgent:
                taken.append(entry)
            else:
                tail[entry.session_id] = len(kept)
                kept.append(entry)
        self._queue, self._tail, self._unheld = kept, tail, 0
        return taken

    def _seen(self, pending: list[_Pending]) -> None:
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

    def _tell(self, pending: list[_Pending], batch: list[_Queued], seqs: list[int]) -> None:
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

    def _along_written(self, entries: list[_Pending], seqs: list[int]) -> None:
        """Events an `Along` caller's statement committed, with their numbers (0: logged
        before under its key)."""
        batch: list[_Queued] = []
        for entry, seq in zip(entries, seqs, strict=True):
            text = encode(entry.data) if entry.encoded is None else entry.encoded
            batch.append((entry.session_id, entry.type, text, entry.key, entry.fut))
            if entry.fut is not None and not entry.fut.done():
                entry.fut.set_result(seq)
        self._tell(entries, batch, seqs)
        self._seen(entries)

    async def _write(self, batch: list[_Queued]) -> list[int]:
        sessions, types, datas, keys = ([row[i] for row in batch] for i in range(4))
        async with self._pool.acquire() as conn:
            if any(key is not None for key in keys):
                row = await conn.fetchrow(
                    _APPEND_KEYED, sessions, types, datas, CHANNEL, self.origin, keys
                )
            else:
                row = await conn.fetchrow(_APPEND, sessions, types, datas, CHANNEL, self.origin)
        return list(row[0]) if row is not None and row[0] is not None else [-1] * len(batch)


class Along:
    """Events written by their caller's own statement (see `EventLog.along`): the
    session's events taken from the log's queue (`queued`), then the caller's own event.
    `written` hands them to the log's readers once committed; closing the handle without
    `written` (the statement failed) puts the taken events back in the log's queue."""

    def __init__(self, events: EventLog, session_id: str, taken: list[_Pending]) -> None:
        self.events = events
        self.session_id = session_id
        self._taken = taken
        self._open = True

    @property
    def origin(self) -> str:
        """What the statement's NOTIFY starts with (`logged_events`), so that readers this
        log hands the events to do not take them again from the database."""
        return self.events.origin

    def queued(self) -> tuple[list[str], list[str], list[str | None]]:
        """The types, data (JSON text) and keys of the taken events, to log before the
        caller's."""
        for entry in self._taken:
            if entry.encoded is None:
                entry.encoded = encode(entry.data)  # the text `written` hands the readers
        taken = self._taken
        return [e.type for e in taken], [e.encoded or "" for e in taken], [e.key for e in taken]

    def written(self, seqs: list[int], type: str, data_json: str, key: str | None = None) -> None:
        """The statement committed the taken events, then the caller's `type` event (its
        data encoded as `data_json`, the text it stored, under `key`), numbered `seqs` in
        that order (0: one logged before under its key)."""
        if type in ANSWER_TYPES:
            raise ValueError("an answer's pieces go through the log, in order")
        own = _Pending(self.session_id, type, {}, None, encoded=data_json, key=key)
        taken, self._taken = self._taken, []
        self._open = False  # the count `along` took for it goes with its own event's
        self.events._along_written([*taken, own], seqs)

    def close(self) -> None:
        """Done, written or not: the session's pieces may go out live again."""
        if self._open:
            self._open = False
            if self._taken:
                taken, self._taken = self._taken, []
                self.events._put_back(taken)
            self.events._closed(self.session_id)

    def __enter__(self) -> Along:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def read_events(
    conn: Any, session_id: str, after_seq: int, limit: int = 500
) -> list[SessionEvent]:
    rows = await conn.fetch(READ, session_id, after_seq, limit)
    return [SessionEvent(r["seq"], r["type"], json.loads(r["data"]), r["at"]) for r in rows]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _observe(fut: asyncio.Future[int]) -> None:
    if not fut.cancelled():
        fut.exception()
