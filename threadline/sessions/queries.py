"""Every SQL statement of the sessions layer (tables `threadline.sessions`,
`session_messages`, `session_events`, `session_feedback`), in one place.

Statements that log events end with the same CTEs (`_LOGGED`): the events inserted, and
riding on NOTIFYs. They read the channel and the writer's origin from a `notify_to` CTE that
each statement defines from its own parameters, so the shared text holds no parameter
numbers; the statements are put together from these named parts once, at import.
"""

from __future__ import annotations

__all__ = [
    "ADD_ANSWER",
    "ADD_MESSAGE",
    "ADD_USER_MESSAGE",
    "ADD_USER_MESSAGE_AND_START",
    "APPEND",
    "APPEND_KEYED",
    "CREATE_SESSION",
    "DELETE_FEEDBACK",
    "DELETE_SESSION",
    "FEEDBACK_RECENT",
    "GET_ACCESS",
    "GET_SESSION",
    "LAST_MESSAGES",
    "LIST_SESSIONS",
    "LOGGED_KEYS",
    "RATE",
    "RATINGS",
    "READ_EVENTS",
    "RENAME",
    "REVOKE_TOKENS",
    "SAVE_STATE",
    "SESSION_AND_MESSAGES",
    "SILENT_SINCE",
]

SESSION_FIELDS = """id, agent, tenant, user_id, state, data::text AS data, status, event_seq,
    title, created_at, updated_at, client"""

# -- sessions --------------------------------------------------------------------------------

CREATE_SESSION = (
    "INSERT INTO threadline.sessions (id, agent, state, tenant, user_id, client) "
    "VALUES ($1, $2, $3, $4, $5, $6) RETURNING " + SESSION_FIELDS
)
GET_SESSION = "SELECT " + SESSION_FIELDS + " FROM threadline.sessions WHERE id = $1"
LIST_SESSIONS = (
    "SELECT " + SESSION_FIELDS + " FROM threadline.sessions "
    "WHERE ($1::text IS NULL OR status = $1) ORDER BY updated_at DESC LIMIT $2"
)
SAVE_STATE = """
UPDATE threadline.sessions SET state = $2, data = $3::jsonb, status = $4, updated_at = now()
WHERE id = $1
"""
RENAME = "UPDATE threadline.sessions SET title = $2 WHERE id = $1 RETURNING 1"
DELETE_SESSION = "DELETE FROM threadline.sessions WHERE id = $1 RETURNING 1"
GET_ACCESS = "SELECT tenant, token_generation FROM threadline.sessions WHERE id = $1"
REVOKE_TOKENS = """
UPDATE threadline.sessions SET token_generation = token_generation + 1
WHERE id = $1 RETURNING token_generation
"""

# -- messages --------------------------------------------------------------------------------

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

# A session's last `$3` messages, newest first, in conversation order: an answer right after
# the message it replies to, even when later messages arrived (and were numbered) while it was
# being written. With `$2`, the conversation as the turn for user message `$2` sees it: no
# later user messages.
LAST_MESSAGES = """
SELECT seq, role, content, client_id, turn_id, meta::text AS meta, created_at
FROM threadline.session_messages WHERE session_id = $1
  AND ($2::int IS NULL OR seq <= $2 OR role <> 'user')
ORDER BY coalesce(reply_to, seq) DESC, seq DESC LIMIT $3
"""
# The session and those messages in one round trip (a turn's `load`).
SESSION_AND_MESSAGES = (
    "SELECT "
    + SESSION_FIELDS
    + """,
       array(SELECT row(m.seq, m.role, m.content, m.client_id, m.turn_id, m.meta, m.created_at)
             FROM ("""
    + LAST_MESSAGES
    + """) m) AS history
FROM threadline.sessions WHERE id = $1
"""
)

# Whether the session is still the agent's and no user message came after message `$2`.
SILENT_SINCE = """
SELECT s.status = 'active' AND NOT EXISTS (
    SELECT 1 FROM threadline.session_messages m
    WHERE m.session_id = s.id AND m.seq > $2 AND m.role = 'user')
FROM threadline.sessions s WHERE s.id = $1
"""

# -- the event log ---------------------------------------------------------------------------

# Of `batch` (session_id, type, data, key, ord), the events the log keeps: those without a
# key, and the first of each key not logged yet (a replayed turn's `message.end` is not).
# A writer racing this statement with the same key (a process presumed dead that was not)
# is stopped by the unique index: that event is dropped, leaving its number unused.
_FRESH_KEYED = """fresh AS (
    SELECT b.* FROM batch b
    WHERE b.key IS NULL
       OR (NOT EXISTS (SELECT 1 FROM threadline.session_events x
                       WHERE x.session_id = b.session_id AND x.key = b.key)
           AND b.ord = (SELECT min(o.ord) FROM batch o
                        WHERE o.session_id = b.session_id AND o.key = b.key))
)"""
_FRESH_ALL = "fresh AS (SELECT * FROM batch)"

# The CTEs that log `numbered` (session_id, type, data as JSON text, seq, key): inserted, and
# riding on NOTIFYs on `notify_to.channel` behind `notify_to.origin`: small ones whole, large
# ones as a pointer (null data), eight to a notification to stay below its 8000-byte limit
# even escaped. Readers in other processes forward them without a query; the data goes as
# the writer encoded it (no jsonb to text again). The statement must read `notice` (`SELECT
# count(*) FROM notice`), or no NOTIFY is sent. The keyed form may insert events that carry a
# key (the unique index stops a racing writer): an insert that checks for conflicts costs
# more, so only statements that may have keys use it.
_WRITTEN = """written AS (
    INSERT INTO threadline.session_events (session_id, seq, type, data, key)
    SELECT session_id, seq, type, data::jsonb, key FROM numbered WHERE key IS NULL
)"""
_WRITTEN_KEYED = """, written_keyed AS (
    INSERT INTO threadline.session_events (session_id, seq, type, data, key)
    SELECT session_id, seq, type, data::jsonb, key FROM numbered WHERE key IS NOT NULL
    ON CONFLICT (session_id, key) WHERE key IS NOT NULL DO NOTHING
)"""
_NOTICE = """, notice AS (
    SELECT pg_notify(t.channel, t.origin || ':' || json_agg(json_build_array(g.session_id,
               g.seq, g.type, CASE WHEN octet_length(g.data) <= 400 THEN g.data END)
           ORDER BY g.session_id, g.seq)::text)
    FROM (SELECT n.*, (row_number() OVER (ORDER BY session_id, seq) - 1) / 8 AS grp
          FROM numbered n) g, notify_to t
    GROUP BY g.grp, t.channel, t.origin
)"""
_LOGGED = _WRITTEN + _NOTICE
_LOGGED_KEYED = _WRITTEN + _WRITTEN_KEYED + _NOTICE

# A batch of events of any sessions: $1 sessions, $2 types, $3 data (JSON text), $4 the
# channel, $5 the origin, ($6 keys). Each session's counter goes up once; each event's number
# comes back in the order given (0: logged before under its key; -1: no such session).
_BATCH = (
    "batch AS (SELECT e.session_id, e.type, e.data, NULL::text AS key, e.ord FROM unnest("
    "$1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS e(session_id, type, data, ord))"
)
_BATCH_KEYED = (
    "batch AS (SELECT e.session_id, e.type, e.data, e.key, e.ord FROM unnest($1::text[], "
    "$2::text[], $3::text[], $6::text[]) WITH ORDINALITY AS e(session_id, type, data, key, ord))"
)
_NUMBERED = """, counts AS (
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
), notify_to AS (SELECT $4::text AS channel, $5::text AS origin), """
_NUMBERS = """
SELECT array_agg(coalesce(n.seq, -1) ORDER BY b.ord), (SELECT count(*) FROM notice)
FROM batch b LEFT JOIN numbered n ON n.ord = b.ord
"""
_NUMBERS_KEYED = """
SELECT array_agg(coalesce(n.seq, CASE WHEN EXISTS (SELECT 1 FROM threadline.sessions s
                                                   WHERE s.id = b.session_id)
                                      THEN 0 ELSE -1 END) ORDER BY b.ord),
       (SELECT count(*) FROM notice)
FROM batch b LEFT JOIN numbered n ON n.ord = b.ord
"""
APPEND = "WITH " + _BATCH + ", " + _FRESH_ALL + _NUMBERED + _LOGGED + _NUMBERS
APPEND_KEYED = (
    "WITH " + _BATCH_KEYED + ", " + _FRESH_KEYED + _NUMBERED + _LOGGED_KEYED + _NUMBERS_KEYED
)

# Which of `$2` (event keys) the session's log holds.
LOGGED_KEYS = """
SELECT key FROM threadline.session_events WHERE session_id = $1 AND key = ANY($2::text[])
"""
READ_EVENTS = """
SELECT seq, type, data::text AS data, at FROM threadline.session_events
WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""

# A user's message and its `message.user` event in one statement, one commit: the session's
# message and event counters go up in the same UPDATE (a row is updated once per statement).
# The event's data is the caller's encoded `{"text", "client_id"}` with `message_seq` added,
# the text `EventLog.append` would have stored. A `client_id` already used: that message, no
# event. The `_AND_START` form starts the message's turn in the same statement too
# (`threadline.engine.local_start`): run `$7 || seq`, input `{"args": [session, seq]}`.
_USER_MESSAGE = """
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
    SELECT $1, message_seq, 'user', $2, $3, '{}'::jsonb FROM bumped
    RETURNING seq
), numbered AS (
    SELECT $1::text AS session_id, event_seq AS seq, 'message.user'::text AS type,
           left($4, -1) || ',"message_seq":' || message_seq || '}' AS data, NULL::text AS key
    FROM bumped
), notify_to AS (SELECT $5::text AS channel, $6::text AS origin), """
_STARTED = """, started AS (
    SELECT threadline.start_run_here(
        $7 || message_seq, $8, $9,
        json_build_object('args', json_build_array($1, message_seq), 'kwargs',
                          json_build_object())::jsonb,
        $10, $1, NULL, $11, $12, $13) AS status
    FROM bumped
)"""
_CREATED = """
SELECT a.seq, true AS created, e.seq AS event_seq, e.data, (SELECT count(*) FROM notice),
       {} AS started
FROM added a, numbered e
UNION ALL SELECT seq, false, NULL, NULL, 0, NULL FROM existing
"""
ADD_USER_MESSAGE = _USER_MESSAGE + _LOGGED + _CREATED.format("NULL::text")
ADD_USER_MESSAGE_AND_START = (
    _USER_MESSAGE + _LOGGED + _STARTED + _CREATED.format("(SELECT status FROM started)")
)

# A turn's answer, the session's new state, and the session's events that end the turn (its
# answer's last pieces, `message.end`) in one statement, one commit. An answer already
# stored (the step replayed) is found by its turn id; the state is saved and the events
# logged all the same. The session's row is updated once: both counters, the state. With no
# events it stores the answer and the state alone.
ADD_ANSWER = (
    """
WITH existing AS (
    SELECT seq FROM threadline.session_messages
    WHERE session_id = $1 AND client_id = $3
), batch AS (
    SELECT $1::text AS session_id, e.type, e.data, e.key, e.ord
    FROM unnest($9::text[], $10::text[], $13::text[]) WITH ORDINALITY AS e(type, data, key, ord)
), """
    + _FRESH_KEYED
    + """, bumped AS (
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
), notify_to AS (SELECT $11::text AS channel, $12::text AS origin), """
    + _LOGGED_KEYED
    + """
SELECT (SELECT seq FROM added UNION ALL SELECT seq FROM existing) AS seq,
       (SELECT base FROM bumped) AS base, (SELECT count(*) FROM notice) AS notices,
       (SELECT array_agg(coalesce(n.seq, 0) ORDER BY b.ord)
        FROM batch b LEFT JOIN numbered n ON n.ord = b.ord) AS seqs
"""
)

# -- feedback --------------------------------------------------------------------------------

RATE = """
INSERT INTO threadline.session_feedback (session_id, turn_id, rating, comment, agent, tenant)
SELECT s.id, $2, $3, $4, s.agent, s.tenant FROM threadline.sessions s
WHERE s.id = $1 AND EXISTS (
    SELECT 1 FROM threadline.session_messages m
    WHERE m.session_id = s.id AND m.turn_id = $2 AND m.role = 'assistant')
ON CONFLICT (session_id, turn_id)
DO UPDATE SET rating = excluded.rating, comment = excluded.comment, at = now()
RETURNING 1
"""
DELETE_FEEDBACK = "DELETE FROM threadline.session_feedback WHERE session_id = $1 AND turn_id = $2"
RATINGS = "SELECT turn_id, rating FROM threadline.session_feedback WHERE session_id = $1"
FEEDBACK_RECENT = """
SELECT f.session_id, f.turn_id, f.rating, f.comment, f.agent, f.tenant, f.at,
       m.content AS answer
FROM threadline.session_feedback f LEFT JOIN threadline.session_messages m
  ON m.session_id = f.session_id AND m.turn_id = f.turn_id AND m.role = 'assistant'
ORDER BY f.at DESC LIMIT $1
"""

# -- reports (the dashboard) ---------------------------------------------------------------

RECENT_SESSIONS = """
SELECT s.id, s.agent, s.title, s.tenant, s.state, s.status, s.updated_at,
       (SELECT count(*) FROM threadline.session_messages m WHERE m.session_id = s.id) AS messages,
       (SELECT count(*) FROM threadline.session_feedback f WHERE f.session_id = s.id
            AND f.rating < 0) AS thumbs_down
FROM threadline.sessions s ORDER BY s.updated_at DESC LIMIT $1
"""
FEEDBACK_BY_AGENT = """
SELECT agent, count(*) FILTER (WHERE rating > 0) AS up, count(*) FILTER (WHERE rating < 0) AS down
FROM threadline.session_feedback GROUP BY agent ORDER BY agent
"""
