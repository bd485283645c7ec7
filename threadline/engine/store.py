"""The engine's SQL, apart from the group-commit statement in `journal.py`.

Every statement that changes a run takes care of one race: a waiter and whoever wakes it
both lock the waiter's row before looking at the condition (a message, a finished child), so
a wake-up can never slip between a waiter's check and its suspension.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ..db.connect import Connection
from ..errors import UnknownRun

# Two-key advisory locks: (classid, objid) = (this constant, worker id). "tlwk" in ASCII.
WORKER_LOCK_CLASS = 0x746C776B
# Taken on the listener connection: held while it lives, released by its death.
TAKE_WORKER_LOCK = f"""
WITH locked AS (SELECT pg_advisory_lock({WORKER_LOCK_CLASS}, $1))
UPDATE threadline.workers SET locked_at = now() FROM locked WHERE id = $1
"""

REGISTER_WORKER = """
INSERT INTO threadline.workers (host, pid, app_version) VALUES ($1, $2, $3) RETURNING id
"""
HEARTBEAT = "UPDATE threadline.workers SET heartbeat_at = now() WHERE id = $1"
STOP_WORKER = "UPDATE threadline.workers SET stopped_at = now() WHERE id = $1"

# A run is orphaned when its owner no longer holds the advisory lock it took since the server
# started (its connection dropped: the process died) or stopped heartbeating for longer than
# the lease. After a server restart no worker holds its lock until its listener reconnects
# (retrying every 0.25 s at most): a lock-less worker that has not taken it again since the
# start counts as alive for RELOCK_GRACE_S after it (handing its runs out at once had two
# workers run them, and buy their calls twice); one killed around the restart is found then.
RELOCK_GRACE_S = 2.0
RECOVER_ORPHANS = f"""
WITH live AS (
    SELECT objid::int AS id FROM pg_locks
    WHERE locktype = 'advisory' AND classid = {WORKER_LOCK_CLASS}::oid AND objsubid = 2
      AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), dead AS (
    SELECT w.id FROM threadline.workers w
    WHERE w.id <> $1
      AND ((w.id NOT IN (SELECT id FROM live)
            AND (w.locked_at >= pg_postmaster_start_time()
                 OR now() > pg_postmaster_start_time() + interval '{RELOCK_GRACE_S} s'))
           OR w.heartbeat_at < now() - make_interval(secs => $2))
)
UPDATE threadline.runs r SET status = 'pending', owner = NULL, recoveries = recoveries + 1
WHERE r.status = 'running' AND r.owner IN (SELECT id FROM dead)
RETURNING r.id
"""

PROMOTE_DUE = """
UPDATE threadline.runs SET status = 'pending'
WHERE status = 'waiting' AND wake_at <= now()
RETURNING id
"""

NEXT_WAKE = "SELECT min(wake_at) FROM threadline.runs WHERE status = 'waiting'"

# A claimed run comes with what its replay needs (its recorded steps, as JSON text, and its
# last event number): no round trips between the claim and the run starting.
CLAIM_COLUMNS = """r.id, r.workflow, r.input::text AS input, r.wake_at, r.waiting_step,
    r.waiting_topic, r.recoveries,
    (SELECT json_agg(json_build_array(s.step_no, s.name, s.output::text, s.error::text))::text
       FROM threadline.steps s WHERE s.run_id = r.id) AS journal,
    (SELECT coalesce(max(e.seq), 0) FROM threadline.events e WHERE e.run_id = r.id)
       AS last_event_seq"""

CLAIM_UNLIMITED = f"""
WITH c AS (
    SELECT id FROM threadline.runs
    WHERE status = 'pending' AND NOT (queue = ANY($2::text[])) AND workflow = ANY($3::text[])
      AND app_version = $4
    ORDER BY created_at LIMIT $5
    FOR UPDATE SKIP LOCKED)
UPDATE threadline.runs r SET status = 'running', owner = $1,
    started_at = coalesce(r.started_at, now())
FROM c WHERE r.id = c.id
RETURNING {CLAIM_COLUMNS}
"""

# A limited queue is claimed under a transaction-level advisory lock on its name, so the
# counts cannot change between reading them and claiming. A key's cap counts its runs in
# progress, waiting ones too (a turn waiting for an approval still holds its session); the
# queue's cap counts the running ones (ADR 0012). threadline.start_run_here (migration 0009)
# takes the same lock.
LOCK_QUEUE = "SELECT pg_advisory_xact_lock(hashtext($1))"
CLAIM_LIMITED = f"""
WITH active AS (
    SELECT queue_key, count(*) AS n, count(*) FILTER (WHERE status = 'running') AS running
    FROM threadline.runs
    WHERE queue = $2 AND status IN ('running', 'waiting') GROUP BY queue_key
), candidates AS (
    SELECT r.id, r.created_at, r.queue_key,
           row_number() OVER (PARTITION BY r.queue_key ORDER BY r.created_at, r.id) AS rank
    FROM threadline.runs r
    WHERE r.status = 'pending' AND r.queue = $2 AND r.workflow = ANY($3::text[])
      AND r.app_version = $4
), chosen AS (
    SELECT c.id FROM candidates c LEFT JOIN active a ON a.queue_key IS NOT DISTINCT FROM c.queue_key
    WHERE $6::int IS NULL OR c.queue_key IS NULL OR c.rank + coalesce(a.n, 0) <= $6
    ORDER BY c.created_at, c.id
    LIMIT least($5, coalesce($7::int - (SELECT coalesce(sum(running), 0) FROM active)::int, $5))
)
UPDATE threadline.runs r SET status = 'running', owner = $1,
    started_at = coalesce(r.started_at, now())
FROM chosen WHERE r.id = chosen.id
RETURNING {CLAIM_COLUMNS}
"""

START_RUN_HERE = """
SELECT threadline.start_run_here($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10)
"""
LOCK_OWN_RUN = """
SELECT 1 FROM threadline.runs WHERE id = $1 AND owner = $2 AND status = 'running' FOR UPDATE
"""
INSERT_STEP = """
INSERT INTO threadline.steps (run_id, step_no, name, output, error)
VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)
"""
SUSPEND = """
UPDATE threadline.runs SET status = 'waiting', owner = NULL, wake_at = $3,
    waiting_topic = $4, waiting_step = $5
WHERE id = $1 AND owner = $2 AND status = 'running'
"""
RELEASE = """
UPDATE threadline.runs SET status = 'pending', owner = NULL
WHERE id = $1 AND owner = $2 AND status = 'running'
"""
CONSUME_MESSAGE = """
UPDATE threadline.messages SET consumed_at = now()
WHERE id = (SELECT id FROM threadline.messages
            WHERE run_id = $1 AND topic = $2 AND consumed_at IS NULL ORDER BY id LIMIT 1)
RETURNING payload::text
"""
CHILD_OUTCOME = """
SELECT status, output::text AS output, error::text AS error FROM threadline.runs WHERE id = $1
"""

LOCK_RUN = "SELECT status FROM threadline.runs WHERE id = $1 FOR UPDATE"
INSERT_MESSAGE = """
INSERT INTO threadline.messages (run_id, topic, payload, idempotency_key)
VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT DO NOTHING
"""
WAKE_FOR_TOPIC = """
UPDATE threadline.runs
SET status = CASE WHEN status = 'waiting' AND waiting_topic = $2 THEN 'pending' ELSE status END,
    wake_at = CASE WHEN status = 'waiting' AND waiting_topic = $2 THEN NULL ELSE wake_at END
WHERE id = $1
RETURNING status
"""

CANCEL_TREE = """
WITH RECURSIVE tree AS (
    SELECT id FROM threadline.runs WHERE id = $1
    UNION SELECT r.id FROM threadline.runs r JOIN tree t ON r.parent_id = t.id
)
UPDATE threadline.runs SET status = 'cancelled', owner = NULL, finished_at = now(),
    wake_at = NULL, waiting_topic = NULL,
    error = jsonb_build_object('type', 'Cancelled', 'message', 'cancelled')
WHERE id IN (SELECT id FROM tree) AND status IN ('pending', 'running', 'waiting')
RETURNING id, parent_id
"""

RUN_STATUS = """
SELECT id, workflow, status, output::text AS output, error::text AS error
FROM threadline.runs WHERE id = $1
"""

READ_EVENTS = """
SELECT seq, kind, data::text AS data, at FROM threadline.events
WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""


@dataclass(frozen=True)
class RunInfo:
    """A run as `runs list` and `runs show` present it."""

    id: str
    workflow: str
    status: str
    app_version: str
    queue: str
    queue_key: str | None
    parent_id: str | None
    owner: int | None
    recoveries: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    wake_at: datetime | None
    waiting_topic: str | None
    input: Any
    output: Any
    error: Any


@dataclass(frozen=True)
class StepInfo:
    step_no: int
    name: str
    output: Any
    error: Any
    created_at: datetime


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


_RUN_FIELDS = """id, workflow, status, app_version, queue, queue_key, parent_id, owner,
    recoveries, created_at, started_at, finished_at, wake_at, waiting_topic,
    input::text AS input, output::text AS output, error::text AS error"""


def _run_info(row: asyncpg.Record) -> RunInfo:
    values = dict(row)
    for key in ("input", "output", "error"):
        values[key] = _json(values[key])
    return RunInfo(**values)


async def list_runs(
    conn: Connection,
    *,
    status: str | None = None,
    workflow: str | None = None,
    limit: int = 50,
) -> list[RunInfo]:
    rows = await conn.fetch(
        f"SELECT {_RUN_FIELDS} FROM threadline.runs "
        "WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR workflow = $2) "
        "ORDER BY created_at DESC LIMIT $3",
        status,
        workflow,
        limit,
    )
    return [_run_info(r) for r in rows]


async def get_run(conn: Connection, run_id: str) -> RunInfo:
    row = await conn.fetchrow(f"SELECT {_RUN_FIELDS} FROM threadline.runs WHERE id = $1", run_id)
    if row is None:
        raise UnknownRun(f"no run with id {run_id!r}")
    return _run_info(row)


async def get_steps(conn: Connection, run_id: str) -> list[StepInfo]:
    rows = await conn.fetch(
        "SELECT step_no, name, output::text AS output, error::text AS error, created_at "
        "FROM threadline.steps WHERE run_id = $1 ORDER BY step_no",
        run_id,
    )
    return [
        StepInfo(r["step_no"], r["name"], _json(r["output"]), _json(r["error"]), r["created_at"])
        for r in rows
    ]
