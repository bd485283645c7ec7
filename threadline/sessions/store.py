"""SQL for sessions and their messages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..db.connect import Connection
from ..errors import ThreadlineError
from .events import CHANNEL, FRESH, Along, encode, logged_events


class UnknownSession(ThreadlineError):
    """No session with this id (or not visible to this tenant)."""


@dataclass(frozen=True)
class SessionInfo:
    id: str
    agent: str
    tenant: str | None
    user_id: str | None
    state: str
    data: dict[str, Any]
    status: str
    event_seq: int
    created_at: datetime
    updated_at: datetime
    title: str | None = None
    client: str | None = None  # a keyed hash of the address an anonymous session came from


@dataclass(frozen=True)
class StoredMessage:
    seq: int
    role: str
    content: str
    client_id: str | None
    turn_id: str | None
    meta: dict[str, Any]
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "role": self.role,
            "content": self.content,
            "client_id": self.client_id,
            "turn_id": self.turn_id,
            "meta": self.meta,
            "at": self.created_at.isoformat(),
        }


_SESSION_FIELDS = """id, agent, tenant, user_id, state, data::text AS data, status, event_seq,
    title, created_at, updated_at, client"""


async def create_session(
    conn: Connection,
    session_id: str,
    agent: str,
    state: str,
    tenant: str | None,
    user_id: str | None,
    client: str | None = None,
) -> SessionInfo:
    row = await conn.fetchrow(
        f"INSERT INTO threadline.sessions (id, agent, state, tenant, user_id, client) "
        f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_SESSION_FIELDS}",
        session_id,
        agent,
        state,
        tenant,
        user_id,
        client,
    )
    return _session(row)


async def get_session(conn: Connection, session_id: str) -> SessionInfo:
    row = await conn.fetchrow(
        f"SELECT {_SESSION_FIELDS} FROM threadline.sessions WHERE id = $1", session_id
    )
    if row is None:
        raise UnknownSession(f"no session with id {session_id!r}")
    return _session(row)


async def list_sessions(
    conn: Connection, *, status: str | None = None, limit: int = 50
) -> list[SessionInfo]:
    rows = await conn.fetch(
        f"SELECT {_SESSION_FIELDS} FROM threadline.sessions "
        "WHERE ($1::text IS NULL OR status = $1) ORDER BY updated_at DESC LIMIT $2",
        status,
        limit,
    )
    return [_session(r) for r in rows]


def _session(row: Any) -> SessionInfo:
    values = dict(row)
    values["data"] = json.loads(values["data"])
    return SessionInfo(**values)


ADD_MESSAGE = """
WITH existing AS (
    SELECT seq FROM threadline.session_messages
    WHERE session_id = $1 AND client_id = $4
), bumped AS (
    UPDATE threadline.sessions SET message_seq = message_seq + 1, updated_at = now(),
        last_user_at = CASE WHEN $2 = 'user' THEN now() ELSE last_user_at END
    WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM existing)
    RETURNING message_seq
), added AS (
    INSERT INTO threadline.session_messages (session_id, seq, role, content, client_id, turn_id,
                                             meta, reply_to)
    SELECT $1, message_seq, $2, $3, $4, $5, $6::jsonb, $7 FROM bumped
    RETURNING seq
)
SELECT seq, true AS created FROM added
UNION ALL SELECT seq, false FROM existing
"""


async def add_message(
    conn: Connection,
    session_id: str,
    role: str,
    content: str,
    *,
    client_id: str | None = None,
    turn_id: str | None = None,
    meta: dict[str, Any] | None = None,
    reply_to: int | None = None,
) -> tuple[int, bool]:
    """Append a message; with a `client_id` already used, returns that message instead.
    `reply_to`: the user message an answer replies to. Returns (seq, created)."""
    row = await conn.fetchrow(
        ADD_MESSAGE,
        session_id,
        role,
        content,
        client_id,
        turn_id,
        json.dumps(meta or {}),
        reply_to,
    )
    if row is None:
        raise UnknownSession(f"no session with id {session_id!r}")
    return int(row["seq"]), bool(row["created"])


# A user's message and its `message.user` event in one statement, one commit: the session's
# message and event counters go up in the same UPDATE (a row is updated once per statement).
# The event's data is the caller's encoded `{"text", "client_id"}` with `message_seq` added,
# the text `EventLog.append` would have stored. A `client_id` already used: that message, no
# event. With `started`, the message's turn is started in the same statement too
# (`threadline.engine.local_start`): run `$7 || seq`, input `{"args": [session, seq]}`.
def _add_user_message(start: bool) -> str:
    started = (
        """, started AS (
    SELECT threadline.start_run_here(
        $7 || message_seq, $8, $9,
        json_build_object('args', json_build_array($1, message_seq), 'kwargs',
                          json_build_object())::jsonb,
        $10, $1, NULL, $11, $12, $13) AS status
    FROM bumped
)"""
        if start
        else ""
    )
    status = "(SELECT status FROM started)" if start else "NULL::text"
    return f"""
WITH existing AS (
    SELECT seq FROM threadline.session_messages
    WHERE session_id = $1 AND client_id = $3
), bumped AS (
    UPDATE threadline.sessions
    SET message_seq = message_seq + 1, event_seq = event_seq + 1, updated_at = now(),
        last_user_at = now()
    WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM existing)
    RETURNING message_seq, event_seq
), added AS (
    INSERT INTO threadline.session_messages (session_id, seq, role, content, client_id, meta)
    SELECT $1, message_seq, 'user', $2, $3, '{{}}'::jsonb FROM bumped
    RETURNING seq
), numbered AS (
    SELECT $1::text AS session_id, event_seq AS seq, 'message.user'::text AS type,
           left($4, -1) || ',"message_seq":' || message_seq || '}}' AS data, NULL::text AS key
    FROM bumped
), {logged_events("$5", "$6")}{started}
SELECT a.seq, true AS created, e.seq AS event_seq, e.data, (SELECT count(*) FROM notice),
       {status} AS started
FROM added a, numbered e
UNION ALL SELECT seq, false, NULL, NULL, 0, NULL FROM existing
"""


ADD_USER_MESSAGE = _add_user_message(start=False)
ADD_USER_MESSAGE_AND_START = _add_user_message(start=True)

# (run id prefix, workflow, version, queue, worker id, per-key cap, queue cap)
TurnStart = tuple[str, str, str, str, int, "int | None", "int | None"]


async def add_user_message(
    conn: Connection,
    along: Along,
    text: str,
    client_id: str,
    start: TurnStart | None = None,
) -> tuple[int, bool, str | None]:
    """Store a user's message and its `message.user` event together (see `EventLog.along`)
    and, with `start`, insert its turn's run (`start_run_here`); with a `client_id` already
    used, returns that message and writes nothing. Returns (seq, created, the run's start
    status or None)."""
    args: list[object] = [
        along.session_id,
        text,
        client_id,
        encode({"text": text, "client_id": client_id}),
        CHANNEL,
        along.origin,
    ]
    row = await conn.fetchrow(
        ADD_USER_MESSAGE if start is None else ADD_USER_MESSAGE_AND_START,
        *args,
        *(start or ()),
    )
    if row is None:
        raise UnknownSession(f"no session with id {along.session_id!r}")
    if row["created"]:
        along.written([row["event_seq"]], "message.user", row["data"])
    return int(row["seq"]), bool(row["created"]), row["started"]


# A turn's answer, the session's new state, and the session's events that end the turn (its
# answer's last pieces, `message.end`) in one statement, one commit. An answer already
# stored (the step replayed) is found by its turn id; the state is saved and the events
# logged all the same. The session's row is updated once: both counters, the state. With no
# events (`add_answer`) it stores the answer and the state alone.
ADD_ANSWER = f"""
WITH existing AS (
    SELECT seq FROM threadline.session_messages
    WHERE session_id = $1 AND client_id = $3
), batch AS (
    SELECT $1::text AS session_id, e.type, e.data, e.key, e.ord
    FROM unnest($9::text[], $10::text[], $13::text[]) WITH ORDINALITY AS e(type, data, key, ord)
), {FRESH}, bumped AS (
    UPDATE threadline.sessions
    SET message_seq = message_seq + CASE WHEN EXISTS (SELECT 1 FROM existing) THEN 0 ELSE 1 END,
        event_seq = event_seq + (SELECT count(*) FROM fresh),
        state = $6, data = $7::jsonb, status = $8, updated_at = now()
    WHERE id = $1
    RETURNING message_seq, event_seq - (SELECT count(*) FROM fresh) AS base
), added AS (
    INSERT INTO threadline.session_messages (session_id, seq, role, content, client_id, turn_id,
                                             meta, reply_to)
    SELECT $1, message_seq, 'assistant', $2, $3, $4, $14::jsonb, $5 FROM bumped
    WHERE NOT EXISTS (SELECT 1 FROM existing)
    RETURNING seq
), numbered AS (
    SELECT f.session_id, f.type, f.data, f.key, f.ord,
           x.base + row_number() OVER (ORDER BY f.ord) AS seq
    FROM fresh f, bumped x
), {logged_events("$11", "$12", keyed=True)}
SELECT (SELECT seq FROM added UNION ALL SELECT seq FROM existing) AS seq,
       (SELECT base FROM bumped) AS base, (SELECT count(*) FROM notice) AS notices,
       (SELECT array_agg(coalesce(n.seq, 0) ORDER BY b.ord)
        FROM batch b LEFT JOIN numbered n ON n.ord = b.ord) AS seqs
"""


async def add_answer(
    conn: Connection,
    session_id: str,
    text: str,
    *,
    turn_id: str,
    reply_to: int,
    state: str,
    data: dict[str, Any],
    status: str,
    along: Along | None = None,
    event: tuple[str, dict[str, Any]] | None = None,
    key: str | None = None,
    meta: dict[str, Any] | None = None,
) -> int:
    """Store a turn's answer (once: its turn id is its client id) and save the session's new
    state with it. With `along` (see `EventLog.along`) and `event`, the session's events it
    took from the log's queue and then `event` are logged in the same statement. Returns the
    answer's seq."""
    if (along is None) != (event is None) or (along and along.session_id != session_id):
        raise ValueError("an answer logs an event only with its session's handle (`along`)")
    types: list[str] = []
    datas: list[str] = []
    keys: list[str | None] = []
    own = ""
    if along is not None and event is not None:
        types, datas, keys = along.queued()
        own = encode(event[1])
        types, datas, keys = [*types, event[0]], [*datas, own], [*keys, key]
    row = await conn.fetchrow(
        ADD_ANSWER,
        session_id,
        text,
        turn_id,
        turn_id,
        reply_to,
        state,
        json.dumps(data),
        status,
        types,
        datas,
        CHANNEL,
        along.origin if along is not None else "",
        keys,
        json.dumps(meta or {}),
    )
    if row is None or row["base"] is None:
        raise UnknownSession(f"no session with id {session_id!r}")
    if along is not None and event is not None:
        along.written(list(row["seqs"]), event[0], own, key)
    return int(row["seq"])


# A session's last `$3` messages, newest first, in conversation order: an answer right after
# the message it replies to, even when later messages arrived (and were numbered) while it was
# being written. With `$2`, the conversation as the turn for user message `$2` sees it: no
# later user messages.
_LAST_MESSAGES = """
SELECT seq, role, content, client_id, turn_id, meta::text AS meta, created_at
FROM threadline.session_messages WHERE session_id = $1
  AND ($2::int IS NULL OR seq <= $2 OR role <> 'user')
ORDER BY coalesce(reply_to, seq) DESC, seq DESC LIMIT $3
"""
# The session and those messages in one round trip (a turn's `load`).
_SESSION_AND_MESSAGES = f"""
SELECT {_SESSION_FIELDS},
       array(SELECT row(m.seq, m.role, m.content, m.client_id, m.turn_id, m.meta, m.created_at)
             FROM ({_LAST_MESSAGES}) m) AS history
FROM threadline.sessions WHERE id = $1
"""


async def messages(
    conn: Connection, session_id: str, *, up_to: int | None = None, limit: int = 1000
) -> list[StoredMessage]:
    rows = await conn.fetch(_LAST_MESSAGES, session_id, up_to, limit)
    return [_message(tuple(r)) for r in reversed(rows)]


async def session_and_messages(
    conn: Connection, session_id: str, *, up_to: int | None = None, limit: int = 1000
) -> tuple[SessionInfo, list[StoredMessage]]:
    """`get_session` and `messages` together, in one round trip."""
    row = await conn.fetchrow(_SESSION_AND_MESSAGES, session_id, up_to, limit)
    if row is None:
        raise UnknownSession(f"no session with id {session_id!r}")
    values = dict(row)
    history = values.pop("history")
    return _session(values), [_message(m) for m in reversed(history)]


def _message(r: tuple[Any, ...]) -> StoredMessage:
    seq, role, content, client_id, turn_id, meta, created_at = r
    return StoredMessage(seq, role, content, client_id, turn_id, json.loads(meta), created_at)


async def save_state(
    conn: Connection, session_id: str, state: str, data: dict[str, Any], status: str
) -> None:
    await conn.execute(
        "UPDATE threadline.sessions SET state = $2, data = $3::jsonb, status = $4, "
        "updated_at = now() WHERE id = $1",
        session_id,
        state,
        json.dumps(data),
        status,
    )
