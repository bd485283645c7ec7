"""Every statement of the engine, in one place: its tables are written by nothing else.

Other layers reach them through the engine's API (`records.write_steps` for step records
committed in another layer's transaction). Statements that share text are composed from the
named pieces below when the module loads; no parameter is ever renumbered.

Every statement that changes a run takes care of one race: a waiter and whoever wakes it
both lock the waiter's row before looking at the condition (a message, a finished child), so
a wake-up can never slip between a waiter's check and its suspension.
"""

from __future__ import annotations

import itertools

# -- workers ------------------------------------------------------------------------------------

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

# -- claiming -----------------------------------------------------------------------------------

PROMOTE_DUE = """
UPDATE threadline.runs SET status = 'pending'
WHERE status = 'waiting' AND wake_at <= now()
RETURNING id
"""

# A claimed run comes with what its replay needs (its recorded steps, as JSON text, and its
# last event number): no round trips between the claim and the run starting.
_CLAIM_COLUMNS = """r.id, r.workflow, r.input::text AS input, r.wake_at, r.waiting_step,
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
RETURNING {_CLAIM_COLUMNS}
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
RETURNING {_CLAIM_COLUMNS}
"""

START_RUN_HERE = """
SELECT threadline.start_run_here($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10)
"""
RELEASE = """
UPDATE threadline.runs SET status = 'pending', owner = NULL
WHERE id = $1 AND owner = $2 AND status = 'running'
"""

# -- a run's own writes outside the journal ------------------------------------------------------

LOCK_OWN_RUN = """
SELECT 1 FROM threadline.runs WHERE id = $1 AND owner = $2 AND status = 'running' FOR UPDATE
"""
INSERT_STEP = """
INSERT INTO threadline.steps (run_id, step_no, name, output, error)
VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)
"""
# Step records of runs their owner still runs (fencing as in the journal), in the transaction
# of another layer's rows (`records.write_steps`). Arrays: run ids, step numbers, names,
# outputs, errors, owners.
INSERT_OWNED_STEPS = "SELECT run_id, step_no FROM threadline.write_steps($1, $2, $3, $4, $5, $6)"
SUSPEND = """
UPDATE threadline.runs SET status = 'waiting', owner = NULL, wake_at = $3,
    waiting_topic = $4, waiting_step = $5
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

# -- messages and cancellation ------------------------------------------------------------------

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
NOTIFY_WORK = "SELECT pg_notify('threadline_work', '')"

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
# $1: the cancelled runs' ids (a JSON array): their workers stop them, their waiters wake.
NOTIFY_CANCELLED = """
SELECT pg_notify('threadline_cancel', $1), pg_notify('threadline_done', $1),
       pg_notify('threadline_work', '')
"""

# -- reading runs -------------------------------------------------------------------------------

RUN_STATUS = """
SELECT id, workflow, status, output::text AS output, error::text AS error
FROM threadline.runs WHERE id = $1
"""
STATUS_OF = "SELECT status FROM threadline.runs WHERE id = $1"
READ_EVENTS = """
SELECT seq, kind, data::text AS data, at FROM threadline.events
WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""

_RUN_FIELDS = """id, workflow, status, app_version, queue, queue_key, parent_id, owner,
    recoveries, created_at, started_at, finished_at, wake_at, waiting_topic,
    input::text AS input, output::text AS output, error::text AS error"""
LIST_RUNS = f"""
SELECT {_RUN_FIELDS} FROM threadline.runs
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR workflow = $2)
ORDER BY created_at DESC LIMIT $3
"""
GET_RUN = f"SELECT {_RUN_FIELDS} FROM threadline.runs WHERE id = $1"
# The runs of a queue key not finished yet (`$3`: the statuses), oldest first.
UNFINISHED_RUNS = """
SELECT id FROM threadline.runs WHERE queue = $1 AND queue_key = $2 AND status = ANY($3::text[])
ORDER BY created_at, id
"""
GET_STEPS = """
SELECT step_no, name, output::text AS output, error::text AS error, created_at
FROM threadline.steps WHERE run_id = $1 ORDER BY step_no
"""

# -- the journal's group commit -----------------------------------------------------------------

# Each kind of write is a data-modifying CTE over unnest()ed arrays; a flush joins the kinds
# present in its batch into one statement, so it is one round trip and one commit. (A single
# statement for all four kinds, mostly empty, plans and runs at twice the cost.) Each kind has
# its parameters at fixed numbers; `_FLUSH_PARAMS` gives every one its type, so a statement
# without some kind still numbers the others alike (the journal passes NULL for those arrays).
# $1 is the worker id; runs $2-$10, steps $11-$15, events $16-$19, outcomes $20-$23.
_FLUSH_PARAMS = """
params AS (
    SELECT $1::int AS worker_id,
           $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
           $9::text[], $10::int[],
           $11::text[], $12::int[], $13::text[], $14::text[], $15::text[],
           $16::text[], $17::int[], $18::text[], $19::text[],
           $20::text[], $21::text[], $22::text[], $23::text[])"""

_RUNS = """
new_runs AS (
    INSERT INTO threadline.runs (id, workflow, app_version, status, input, queue, queue_key,
                                 parent_id, owner, started_at)
    SELECT n.id, n.workflow, n.app_version, n.status, n.input::jsonb, n.queue, n.queue_key,
           n.parent_id, n.owner, CASE WHEN n.owner IS NULL THEN NULL ELSE now() END
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::int[])
         AS n(id, workflow, app_version, status, input, queue, queue_key, parent_id, owner)
    ON CONFLICT (id) DO NOTHING
    RETURNING id, status, owner),
runs_notice AS (
    SELECT pg_notify('threadline_work', '')
    WHERE EXISTS (SELECT 1 FROM new_runs WHERE status = 'pending'))"""

_STEPS_OF_OWNED_RUNS = """
new_steps AS (
    INSERT INTO threadline.steps (run_id, step_no, name, output, error)
    SELECT s.run_id, s.step_no, s.name, s.output::jsonb, s.error::jsonb
    FROM unnest($11::text[], $12::int[], $13::text[], $14::text[], $15::text[])
         AS s(run_id, step_no, name, output, error)
    WHERE EXISTS (SELECT 1 FROM threadline.runs r
                  WHERE r.id = s.run_id AND r.owner = $1 AND r.status = 'running')"""
# A step may share a statement with the insert of its own run (a run's first step is recorded
# with the run itself); the CTEs share one snapshot, so look at new_runs too.
_OR_OF_NEW_RUNS = """
       OR s.run_id IN (SELECT id FROM new_runs WHERE owner = $1)"""
_STEPS_END = """
    ON CONFLICT DO NOTHING
    RETURNING run_id, step_no)"""

_EVENTS = """
new_events AS (
    INSERT INTO threadline.events (run_id, seq, kind, data)
    SELECT e.run_id, e.seq, e.kind, e.data::jsonb
    FROM unnest($16::text[], $17::int[], $18::text[], $19::text[]) AS e(run_id, seq, kind, data)
    ON CONFLICT DO NOTHING
    RETURNING run_id, seq),
events_notice AS (
    SELECT pg_notify('threadline_events', json_agg(DISTINCT run_id)::text) FROM
        (SELECT run_id, (row_number() OVER ()) / 30 AS grp FROM new_events) d GROUP BY grp)"""

_OUTCOMES = """
finished AS (
    UPDATE threadline.runs r
    SET status = f.status, output = f.output::jsonb, error = f.error::jsonb,
        finished_at = now(), owner = NULL, wake_at = NULL, waiting_topic = NULL
    FROM unnest($20::text[], $21::text[], $22::text[], $23::text[])
         AS f(id, status, output, error)
    WHERE r.id = f.id AND r.owner = $1 AND r.status = 'running'
    RETURNING r.id, r.parent_id, r.queue, r.queue_key),
woken_parents AS (
    -- Always touch the parent row: if the parent is mid-suspend, this waits for its lock and
    -- then re-reads its status, so a child finishing as its parent suspends is never missed.
    UPDATE threadline.runs p
    SET status = CASE WHEN p.status = 'waiting' AND p.waiting_topic = ANY(w.topics)
                      THEN 'pending' ELSE p.status END,
        wake_at = CASE WHEN p.status = 'waiting' AND p.waiting_topic = ANY(w.topics)
                       THEN NULL ELSE p.wake_at END
    FROM (SELECT parent_id, array_agg('child:' || id) AS topics
          FROM finished WHERE parent_id IS NOT NULL GROUP BY parent_id) w
    WHERE p.id = w.parent_id
    RETURNING p.id, p.status),
outcomes_notice AS (
    SELECT pg_notify('threadline_done', json_agg(id)::text) FROM
        (SELECT id, (row_number() OVER ()) / 30 AS grp FROM finished) d GROUP BY grp
    UNION ALL
    -- A woken parent can run; so can a run that waited for its key's slot (a session's
    -- next turn) now that one of these freed it.
    SELECT pg_notify('threadline_work', '')
    WHERE EXISTS (SELECT 1 FROM woken_parents WHERE status = 'pending')
       OR EXISTS (SELECT 1 FROM finished f JOIN threadline.runs r
                  ON r.queue = f.queue AND r.queue_key = f.queue_key AND r.status = 'pending'))"""

# What each kind's CTEs return, one row per write accepted: (kind, run id, number). A notice
# CTE runs only when the main query reads it, hence its count.
_RUNS_WRITTEN = """SELECT 'r' AS kind, id, 0 AS n FROM new_runs
UNION ALL SELECT 'x', NULL, count(*)::int FROM runs_notice"""
_STEPS_WRITTEN = "SELECT 's', run_id, step_no FROM new_steps"
_EVENTS_WRITTEN = """SELECT 'e', run_id, seq FROM new_events
UNION ALL SELECT 'x', NULL, count(*)::int FROM events_notice"""
_OUTCOMES_WRITTEN = """SELECT 'f', id, 0 FROM finished
UNION ALL SELECT 'x', NULL, count(*)::int FROM outcomes_notice"""

# Whether a batch holds (runs, steps, events, outcomes).
Kinds = tuple[bool, bool, bool, bool]


def _flush(kinds: Kinds) -> str:
    runs, steps, events, outcomes = kinds
    steps_cte = _STEPS_OF_OWNED_RUNS + (_OR_OF_NEW_RUNS if runs else "") + _STEPS_END
    parts = [
        (runs, _RUNS, _RUNS_WRITTEN),
        (steps, steps_cte, _STEPS_WRITTEN),
        (events, _EVENTS, _EVENTS_WRITTEN),
        (outcomes, _OUTCOMES, _OUTCOMES_WRITTEN),
    ]
    ctes = [_FLUSH_PARAMS] + [cte for used, cte, _ in parts if used]
    written = [select for used, _, select in parts if used]
    return "WITH" + ",".join(ctes) + "\n" + "\nUNION ALL ".join(written)


# The journal's statement for each set of kinds a batch can hold (never none).
FLUSH: dict[Kinds, str] = {
    (runs, steps, events, outcomes): _flush((runs, steps, events, outcomes))
    for runs, steps, events, outcomes in itertools.product((False, True), repeat=4)
    if runs or steps or events or outcomes
}

# -- reports -----------------------------------------------------------------------------------

# The first part counts every run of the workflow (the table has no index on `workflow`): a
# scan that grows with the runs kept.
RUN_COUNTS = """
SELECT 'status' AS kind, status AS key, count(*) AS n
FROM threadline.runs WHERE workflow = $1 GROUP BY status
UNION ALL
SELECT 'pending', queue, count(*) FROM threadline.runs WHERE status = 'pending' GROUP BY queue
"""
