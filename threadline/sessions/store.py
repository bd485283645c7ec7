"""Sessions and their messages, stored (the statements are in `queries`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..db.connect import Connection
from ..errors import ThreadlineError
from . import queries as q
from .events import CHANNEL, Along, encode


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
        q.CREATE_SESSION,
        session_id,
        agent,
        state,
        tenant,
        user_id,
        client,
    )
    return _session(row)


async def get_session(conn: Connection, session_id: str) -> SessionInfo:
    row = await conn.fetchrow(q.GET_SESSION, session_id)
    if row is None:
        raise UnknownSession(f"no session with id {session_id!r}")
    return _session(row)


async def list_sessions(
    conn: Connection, *, status: str | None = None, limit: int = 50
) -> list[SessionInfo]:
    rows = await conn.fetch(q.LIST_SESSIONS, status, limit)
    return [_session(r) for r in rows]


def _session(row: Any) -> SessionInfo:
    values = dict(row)
    values["data"] = json.loads(values["data"])
    return SessionInfo(**values)


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
        q.ADD_MESSAGE,
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
        q.ADD_USER_MESSAGE if start is None else q.ADD_USER_MESSAGE_AND_START,
        *args,
        *(start or ()),
    )
    if row is None:
        raise UnknownSession(f"no session with id {along.session_id!r}")
    if row["created"]:
        along.written([row["event_seq"]], "message.user", row["data"])
    return int(row["seq"]), bool(row["created"]), row["started"]


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
        q.ADD_ANSWER,
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


async def messages(
    conn: Connection, session_id: str, *, up_to: int | None = None, limit: int = 1000
) -> list[StoredMessage]:
    rows = await conn.fetch(q.LAST_MESSAGES, session_id, up_to, limit)
    return [_message(tuple(r)) for r in reversed(rows)]


async def session_and_messages(
    conn: Connection, session_id: str, *, up_to: int | None = None, limit: int = 1000
) -> tuple[SessionInfo, list[StoredMessage]]:
    """`get_session` and `messages` together, in one round trip."""
    row = await conn.fetchrow(q.SESSION_AND_MESSAGES, session_id, up_to, limit)
    if row is None:
        raise UnknownSession(f"no session with id {session_id!r}")
    values = dict(row)
    history = values.pop("history")
    return _session(values), [_message(m) for m in reversed(history)]


def _message(r: tuple[Any, ...]) -> StoredMessage:
    seq, role, content, client_id, turn_id, meta, created_at = r
    return StoredMessage(seq, role, content, client_id, turn_id, json.loads(meta), created_at)


async def silent_since(conn: Connection, session_id: str, seq: int) -> bool:
    """Whether the session is still the agent's (not handed off, not closed) and its user
    said nothing after message `seq`."""
    return bool(await conn.fetchval(q.SILENT_SINCE, session_id, seq))


async def logged_keys(conn: Connection, session_id: str, keys: list[str]) -> set[str]:
    """Which of `keys` the session's event log holds (see `EventLog.append`)."""
    rows = await conn.fetch(q.LOGGED_KEYS, session_id, keys)
    return {r["key"] for r in rows}


async def save_state(
    conn: Connection, session_id: str, state: str, data: dict[str, Any], status: str
) -> None:
    await conn.execute(
        q.SAVE_STATE,
        session_id,
        state,
        json.dumps(data),
        status,
    )
