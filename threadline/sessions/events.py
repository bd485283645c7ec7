"""The session event log: every frame a client sees, numbered per session, durable.

Turns append events (`message.delta`, `message.end`, ...) through `EventLog.append`, which
group-commits them: all events queued while a write is in flight go in the next statement,
numbered from each session's counter in that same statement, followed by one NOTIFY per
batch. Readers (WebSocket and SSE handlers, in any process) wake on the NOTIFY and read the
log after the last sequence number they delivered, so a client that reconnects with
`resume {after_seq}` gets every missed event exactly once, in order.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ..engine.dbretry import with_db_retry

log = logging.getLogger(__name__)

CHANNEL = "threadline_session_events"

_APPEND = """
WITH batch AS (
    SELECT e.session_id, e.type, e.data::jsonb AS data, e.ord
    FROM unnest($1::text[], $2::text[], $3::text[])
         WITH ORDINALITY AS e(session_id, type, data, ord)
), counts AS (
    SELECT session_id, count(*) AS n FROM batch GROUP BY session_id
), bumped AS (
    UPDATE threadline.sessions s SET event_seq = s.event_seq + c.n, updated_at = now()
    FROM counts c WHERE s.id = c.session_id
    RETURNING s.id, s.event_seq - c.n AS base
), written AS (
    INSERT INTO threadline.session_events (session_id, seq, type, data)
    SELECT b.session_id, x.base + row_number() OVER (PARTITION BY b.session_id ORDER BY b.ord),
           b.type, b.data
    FROM batch b JOIN bumped x ON x.id = b.session_id
    RETURNING session_id, seq, type, data
), numbered AS (
    SELECT w.*, (row_number() OVER (ORDER BY session_id, seq) - 1) / 10 AS grp FROM written w
), notice AS (
    -- The events themselves ride on the NOTIFY (small ones whole, large ones as a pointer),
    -- ten to a notification to stay far below its 8000-byte limit: readers in every
    -- process forward them without a query, and read the log only to fill a gap.
    SELECT pg_notify($4, json_agg(json_build_object(
               's', session_id, 'q', seq, 't', type,
               'd', CASE WHEN octet_length(data::text) <= 500 THEN data END)
           ORDER BY session_id, seq)::text)
    FROM numbered GROUP BY grp
)
SELECT w.session_id, w.seq, (SELECT count(*) FROM notice) AS notified FROM written w
"""

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


class EventLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._queue: list[tuple[str, str, str, asyncio.Future[int] | None]] = []
        self._task: asyncio.Task[None] | None = None

    def append(self, session_id: str, type: str, data: dict[str, Any]) -> asyncio.Future[int]:
        """Queue an event; the future gives its sequence number once it is durable."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_observe)
        self._enqueue(session_id, type, data, fut)
        return fut

    def post(self, session_id: str, type: str, data: dict[str, Any]) -> None:
        """Queue an event nobody waits for (a streamed token): no future, same order."""
        self._enqueue(session_id, type, data, None)

    def _enqueue(
        self, session_id: str, type: str, data: dict[str, Any], fut: asyncio.Future[int] | None
    ) -> None:
        self._queue.append((session_id, type, json.dumps(data), fut))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def drain(self) -> None:
        while self._task is not None:
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        try:
            while self._queue:
                await asyncio.sleep(0)  # let the events that are ready now join the batch
                batch, self._queue = self._queue, []
                try:
                    seqs = await with_db_retry(
                        functools.partial(self._write, batch), what="session events"
                    )
                except Exception as exc:
                    log.error("could not write %d session events: %s", len(batch), exc)
                    for *_, fut in batch:
                        if fut is not None and not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, _, _, fut), seq in zip(batch, seqs, strict=True):
                    if fut is not None and not fut.done():
                        fut.set_result(seq)
        finally:
            self._task = None

    async def _write(
        self, batch: list[tuple[str, str, str, asyncio.Future[int] | None]]
    ) -> list[int]:
        sessions, types, datas = ([row[i] for row in batch] for i in range(3))
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_APPEND, sessions, types, datas, CHANNEL)
        # Rows come back per session in order; hand each event its number in queue order.
        numbers: dict[str, list[int]] = {}
        for row in sorted(rows, key=lambda r: (r["session_id"], r["seq"])):
            numbers.setdefault(row["session_id"], []).append(row["seq"])
        cursor = {sid: iter(seqs) for sid, seqs in numbers.items()}
        return [next(cursor[sid]) if sid in cursor else -1 for sid in sessions]


async def read_events(
    conn: Any, session_id: str, after_seq: int, limit: int = 500
) -> list[SessionEvent]:
    rows = await conn.fetch(READ, session_id, after_seq, limit)
    return [SessionEvent(r["seq"], r["type"], json.loads(r["data"]), r["at"]) for r in rows]


def _observe(fut: asyncio.Future[int]) -> None:
    if not fut.cancelled():
        fut.exception()
