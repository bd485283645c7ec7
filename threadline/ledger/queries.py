"""The ledger's SQL: every statement on its tables (`llm_calls`, `budgets`, `budget_usage`,
`budget_holders`, `budget_reservations`), one named constant each.

A statement shared by several is a named fragment joined to them once, here, when the module
is imported; no statement is built from values known only at run time.
"""

from __future__ import annotations

__all__ = [
    "APPLICABLE",
    "BUDGET_STATES",
    "CALIBRATE",
    "CALLS",
    "FORGET_DEAD_HOLDERS",
    "HEARTBEAT",
    "INSERT_CALL",
    "LOAD_LIMITS",
    "PROGRESS",
    "RECOVER",
    "REGISTER_HOLDER",
    "RELIMIT_USAGE",
    "REMOVE_LIMIT",
    "RESERVE",
    "RETIRE_HOLDER",
    "SEED",
    "SETTLE",
    "SET_LIMIT",
]

# -- ledger rows -------------------------------------------------------------------------------

INSERT_CALL = """
INSERT INTO threadline.llm_calls (
    tenant, user_id, session_id, turn_id, run_id, step_no, agent,
    provider, requested_model, model, attempt, status, stop_reason, error_code, fallback_reason,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    cost_usd, saved_usd, priced, estimated, latency_ms, ttft_ms, reservation_id, reserved_usd,
    input_bytes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)
"""

# One ledger row and its step's records in one statement (a model call in a workflow, the usual
# case: one round trip): the row's 29 values as for INSERT_CALL, then the records' six arrays
# for the engine's `threadline.write_steps` (its table, its SQL); the records written.
INSERT_CALL_WITH_STEPS = (
    "WITH step AS (SELECT * FROM threadline.write_steps($30, $31, $32, $33, $34, $35)), "
    "call AS (" + INSERT_CALL + ") SELECT run_id, step_no FROM step"
)

# Ledger rows, oldest first, filtered on equality: a pair of parameters per column, whether
# its filter applies and the value it must equal (a filter on None matches no row).
CALLS = """
SELECT * FROM threadline.llm_calls
WHERE (NOT $1::bool OR tenant = $2::text)
  AND (NOT $3::bool OR user_id = $4::text)
  AND (NOT $5::bool OR session_id = $6::text)
  AND (NOT $7::bool OR turn_id = $8::text)
  AND (NOT $9::bool OR run_id = $10::text)
  AND (NOT $11::bool OR agent = $12::text)
  AND (NOT $13::bool OR status = $14::text)
ORDER BY id
"""

# A model's bytes per input token over its recent calls: $1 provider, $2 model, $3 the LIKE
# pattern of its dated versions, $4 how many rows.
CALIBRATE = """
SELECT sum(input_bytes)::float8 / nullif(sum(input_tokens), 0) FROM (
    SELECT input_bytes, input_tokens FROM threadline.llm_calls
    WHERE provider = $1 AND (model = $2 OR model LIKE $3) AND input_bytes > 0
      AND input_tokens > 0 AND status = 'ok' AND NOT estimated
    ORDER BY id DESC LIMIT $4
) recent
"""

# -- limits set at run time --------------------------------------------------------------------

SET_LIMIT = """
INSERT INTO threadline.budgets (scope_kind, scope_key, period, limit_usd) VALUES ($1, $2, $3, $4)
ON CONFLICT (scope_kind, scope_key, period) DO UPDATE SET limit_usd = $4, updated_at = now()
"""
# The counter already open under this limit (the total, or today's) takes it at once; those
# under a '*' limit take it at their next call.
RELIMIT_USAGE = """
UPDATE threadline.budget_usage SET limit_usd = $4::numeric, updated_at = now(),
    warned_pct = CASE WHEN $4::numeric <= 0 THEN 0 WHEN spent_usd >= $4::numeric THEN 100
                      WHEN spent_usd >= 0.8 * $4::numeric THEN 80
                      WHEN spent_usd >= 0.5 * $4::numeric THEN 50 ELSE 0 END
WHERE scope_kind = $1 AND scope_key = $2
  AND bucket = CASE WHEN $3::text = 'total' THEN 'total' ELSE $5 END
"""
REMOVE_LIMIT = (
    "DELETE FROM threadline.budgets WHERE scope_kind = $1 AND scope_key = $2 AND period = $3"
)
# Every counter with a limit or with money on it: $1 kind, $2 key (NULL: any), $3 today.
BUDGET_STATES = """
SELECT coalesce(u.scope_kind, b.scope_kind) AS scope_kind,
       coalesce(u.scope_key, b.scope_key) AS scope_key,
       coalesce(u.bucket, CASE b.period WHEN 'total' THEN 'total' ELSE $3 END) AS bucket,
       b.limit_usd AS set_usd, u.limit_usd AS enforced_usd,
       coalesce(u.spent_usd, 0) AS spent_usd, coalesce(u.reserved_usd, 0) AS reserved_usd,
       coalesce(u.overshoot_usd, 0) AS overshoot_usd, coalesce(u.calls, 0) AS calls,
       coalesce(u.warned_pct, 0) AS warned_pct
FROM (SELECT * FROM threadline.budget_usage WHERE bucket IN ('total', $3)) u
FULL JOIN threadline.budgets b ON b.scope_kind = u.scope_kind AND b.scope_key = u.scope_key
    AND b.period = CASE WHEN u.bucket = 'total' THEN 'total' ELSE 'daily' END
WHERE ($1::text IS NULL OR coalesce(u.scope_kind, b.scope_kind) = $1)
  AND ($2::text IS NULL OR coalesce(u.scope_key, b.scope_key) = $2)
ORDER BY 1, 2, 3
"""
# What the limit index of a process holds (see `limit_index`).
LOAD_LIMITS = "SELECT scope_kind, scope_key, period FROM threadline.budgets"

# -- holders -----------------------------------------------------------------------------------

REGISTER_HOLDER = """
INSERT INTO threadline.budget_holders (host, pid, lease_s) VALUES ($1, $2, $3) RETURNING id
"""
HEARTBEAT = "UPDATE threadline.budget_holders SET heartbeat_at = now() WHERE id = $1 RETURNING id"
# A holder that closes with reservations still open leaves them to recovery at once.
RETIRE_HOLDER = """
WITH gone AS (
    DELETE FROM threadline.budget_holders h WHERE id = $1
      AND NOT EXISTS (SELECT 1 FROM threadline.budget_reservations r WHERE r.holder = h.id)
    RETURNING id)
UPDATE threadline.budget_holders SET heartbeat_at = '-infinity'
WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM gone)
"""
FORGET_DEAD_HOLDERS = """
DELETE FROM threadline.budget_holders h
WHERE h.id <> $1 AND h.heartbeat_at < now() - make_interval(secs => h.lease_s)
  AND NOT EXISTS (SELECT 1 FROM threadline.budget_reservations r WHERE r.holder = h.id)
"""

# -- reservations ------------------------------------------------------------------------------

# The counters of a call that have a limit: a key's own run-time limit, else the lower of the
# declared one and the kind's '*' limit. $1..$5: the call's candidate counters. A fragment:
# the statements below begin with it.
_LIMITED = """
WITH candidate AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[])
        AS c(scope_kind, scope_key, period, bucket, declared_usd)
), limited AS (
    SELECT c.scope_kind, c.scope_key, c.bucket,
           coalesce(own.limit_usd, least(c.declared_usd, every.limit_usd)) AS limit_usd
    FROM candidate c
    LEFT JOIN threadline.budgets own ON own.scope_kind = c.scope_kind
        AND own.scope_key = c.scope_key AND own.period = c.period
    LEFT JOIN threadline.budgets every ON every.scope_kind = c.scope_kind
        AND every.scope_key = '*' AND every.period = c.period
    WHERE coalesce(own.limit_usd, c.declared_usd, every.limit_usd) IS NOT NULL
)"""

# Counters seen for the first time get their row before the reservation is retried.
SEED = (
    _LIMITED
    + """
INSERT INTO threadline.budget_usage (scope_kind, scope_key, bucket, limit_usd)
SELECT scope_kind, scope_key, bucket, limit_usd FROM limited
ORDER BY scope_kind, scope_key, bucket
ON CONFLICT DO NOTHING
"""
)

APPLICABLE = _LIMITED + " SELECT count(*) FROM limited"

# $6: the call's fixed worst-case cost (its input), $7: the worst-case price of one output
# token, $8/$9: the most / fewest output tokens wanted, $10: the holder, $11..: the call.
# A counter whose limit changed since its last reservation gets the warning threshold its
# spending has reached under the new one.
RESERVE = (
    _LIMITED
    + """,
locked AS (
    SELECT u.scope_kind, u.scope_key, u.bucket, u.spent_usd, u.reserved_usd,
           u.limit_usd AS old_limit, l.limit_usd
    FROM threadline.budget_usage u
    JOIN limited l ON u.scope_kind = l.scope_kind AND u.scope_key = l.scope_key
        AND u.bucket = l.bucket
    ORDER BY u.scope_kind, u.scope_key, u.bucket
    FOR UPDATE OF u
), verdict AS (
    SELECT (SELECT count(*) FROM limited) AS wanted, count(*) AS found,
           min(limit_usd - spent_usd - reserved_usd) AS headroom
    FROM locked
), granted AS (
    SELECT t.tokens, ceil(($6::numeric + $7::numeric * t.tokens) * 1e10) / 1e10 AS amount
    FROM (SELECT CASE WHEN $7::numeric = 0 THEN $8::int
                      ELSE least($8::int, floor((v.headroom - $6::numeric) / $7::numeric))::int
                 END AS tokens
          FROM verdict v
          WHERE v.wanted > 0 AND v.found = v.wanted AND v.headroom >= $6::numeric) t
    WHERE t.tokens >= $9::int
), updated AS (
    UPDATE threadline.budget_usage u
    SET reserved_usd = u.reserved_usd + g.amount, limit_usd = l.limit_usd, updated_at = now(),
        warned_pct = CASE WHEN l.limit_usd = l.old_limit THEN u.warned_pct
                          WHEN l.limit_usd <= 0 THEN 0
                          WHEN u.spent_usd >= l.limit_usd THEN 100
                          WHEN u.spent_usd >= 0.8 * l.limit_usd THEN 80
                          WHEN u.spent_usd >= 0.5 * l.limit_usd THEN 50 ELSE 0 END
    FROM locked l, granted g
    WHERE u.scope_kind = l.scope_kind AND u.scope_key = l.scope_key AND u.bucket = l.bucket
    RETURNING u.scope_kind
), reservation AS (
    INSERT INTO threadline.budget_reservations (holder, amount_usd, scope_kinds, scope_keys,
        buckets, mode, provider, model, requested_model, attempt, fallback_reason, scope,
        input_tokens, max_tokens, fixed_usd, token_usd, output_seen)
    SELECT $10, g.amount, k.kinds, k.keys, k.buckets, $11, $12, $13, $14, $15, $16, $17::jsonb,
           $18, g.tokens, $6::numeric, $7::numeric, CASE WHEN $19::bool THEN 0 END
    FROM granted g, (SELECT array_agg(scope_kind ORDER BY scope_kind, scope_key, bucket) AS kinds,
                            array_agg(scope_key ORDER BY scope_kind, scope_key, bucket) AS keys,
                            array_agg(bucket ORDER BY scope_kind, scope_key, bucket) AS buckets
                     FROM locked) k
    RETURNING id
)
SELECT v.wanted, v.found, g.tokens, g.amount, (SELECT id FROM reservation) AS reservation_id,
       (SELECT json_agg(json_build_object('kind', scope_kind, 'key', scope_key, 'bucket', bucket,
               'limit', limit_usd, 'spent', spent_usd, 'reserved', reserved_usd))
        FROM locked)::text AS counters
FROM verdict v LEFT JOIN granted g ON true
"""
)

# Moves what the reservations in `done` held to what they cost, counter by counter (each
# locked in key order), and reports the counters that crossed a warning threshold (50, 80,
# 100 % of their limit) or were overshot (estimate mode). A fragment: the statements below
# end with it.
_CHARGE = """
charges AS (
    SELECT c.scope_kind, c.scope_key, c.bucket, sum(d.amount_usd) AS released,
           sum(d.actual_usd) AS charged, sum(greatest(d.actual_usd - d.amount_usd, 0)) AS overshoot,
           count(*) AS calls
    FROM done d, unnest(d.scope_kinds, d.scope_keys, d.buckets) AS c(scope_kind, scope_key, bucket)
    GROUP BY c.scope_kind, c.scope_key, c.bucket
), locked AS (
    SELECT u.scope_kind, u.scope_key, u.bucket, u.warned_pct
    FROM threadline.budget_usage u
    JOIN charges c ON u.scope_kind = c.scope_kind AND u.scope_key = c.scope_key
        AND u.bucket = c.bucket
    ORDER BY u.scope_kind, u.scope_key, u.bucket
    FOR UPDATE OF u
), charged AS (
    UPDATE threadline.budget_usage u
    SET reserved_usd = u.reserved_usd - c.released, spent_usd = u.spent_usd + c.charged,
        overshoot_usd = u.overshoot_usd + c.overshoot, calls = u.calls + c.calls,
        warned_pct = greatest(u.warned_pct, CASE
            WHEN u.limit_usd <= 0 THEN 0
            WHEN u.spent_usd + c.charged >= u.limit_usd THEN 100
            WHEN u.spent_usd + c.charged >= 0.8 * u.limit_usd THEN 80
            WHEN u.spent_usd + c.charged >= 0.5 * u.limit_usd THEN 50 ELSE 0 END),
        updated_at = now()
    FROM charges c, locked l
    WHERE u.scope_kind = c.scope_kind AND u.scope_key = c.scope_key AND u.bucket = c.bucket
      AND l.scope_kind = c.scope_kind AND l.scope_key = c.scope_key AND l.bucket = c.bucket
    RETURNING u.scope_kind, u.scope_key, u.bucket, u.limit_usd, u.spent_usd,
              l.warned_pct AS warned_before, u.warned_pct AS warned_after, c.overshoot
)
SELECT d.id AS reservation_id, d.scope_kinds, d.scope_keys, d.buckets,
       NULL::text AS scope_kind, NULL::text AS scope_key, NULL::text AS bucket,
       NULL::numeric AS limit_usd, NULL::numeric AS spent_usd, NULL::smallint AS warned_before,
       NULL::smallint AS warned_after, NULL::numeric AS overshoot
FROM done d
UNION ALL
SELECT NULL, NULL, NULL, NULL, scope_kind, scope_key, bucket, limit_usd, spent_usd,
       warned_before, warned_after, overshoot
FROM charged WHERE warned_after > warned_before OR overshoot > 0
"""

# $1: reservation ids, $2: their actual costs (NULL: unknown, charged at the reserved amount).
SETTLE = (
    """
WITH done AS (
    DELETE FROM threadline.budget_reservations r
    USING unnest($1::bigint[], $2::numeric[]) AS s(id, actual_usd)
    WHERE r.id = s.id
    RETURNING r.id, r.amount_usd, coalesce(s.actual_usd, r.amount_usd) AS actual_usd,
              r.scope_kinds, r.scope_keys, r.buckets
),"""
    + _CHARGE
)

# The open reservations of holders that stopped heartbeating are settled, each with a ledger
# row saying so (`interrupted`, `estimated`): a call whose holder reported what it had streamed
# (`progress`) at its input and the output tokens seen, any other at its worst case.
# $1: the recovering holder (never itself), $2: batch size.
RECOVER = (
    """
WITH dead AS (
    SELECT id FROM threadline.budget_holders
    WHERE id <> $1 AND heartbeat_at < now() - make_interval(secs => lease_s)
), done AS (
    DELETE FROM threadline.budget_reservations r
    WHERE r.id IN (SELECT id FROM threadline.budget_reservations
                   WHERE holder IN (SELECT id FROM dead) ORDER BY id LIMIT $2
                   FOR UPDATE SKIP LOCKED)
    RETURNING r.*,
        CASE WHEN r.output_seen IS NULL OR r.token_usd IS NULL THEN r.amount_usd
             ELSE least(r.amount_usd, ceil((
                 coalesce(r.fixed_usd * r.input_seen / nullif(r.input_tokens, 0), r.fixed_usd)
                 + r.token_usd * r.output_seen) * 1e10) / 1e10)
        END AS actual_usd
), ledger_rows AS (
    INSERT INTO threadline.llm_calls (tenant, user_id, session_id, turn_id, run_id, step_no,
        agent, provider, requested_model, model, attempt, status, error_code, fallback_reason,
        input_tokens, output_tokens, cost_usd, priced, estimated, latency_ms, reservation_id,
        reserved_usd)
    SELECT d.scope->>'tenant', d.scope->>'user', d.scope->>'session', d.scope->>'turn',
           d.scope->>'run_id', (d.scope->>'step_no')::int, d.scope->>'agent', d.provider,
           d.requested_model, d.model, d.attempt, 'error', 'interrupted', d.fallback_reason,
           coalesce(d.input_seen, d.input_tokens), coalesce(d.output_seen, d.max_tokens),
           d.actual_usd, true, true,
           extract(epoch FROM now() - d.created_at) * 1000, d.id, d.amount_usd
    FROM done d
    ON CONFLICT DO NOTHING
),"""
    + _CHARGE
)

# What the calls of open reservations have streamed so far: $1 ids, $2 input, $3 output tokens.
PROGRESS = """
UPDATE threadline.budget_reservations r SET input_seen = p.input, output_seen = p.output
FROM unnest($1::bigint[], $2::int[], $3::int[]) AS p(id, input, output) WHERE r.id = p.id
"""

CALL_TOTALS = """
SELECT count(*) AS calls,
       coalesce(sum(cost_usd), 0) AS cost,
       coalesce(sum(saved_usd), 0) AS saved,
       coalesce(sum(cost_usd) FILTER (WHERE at >= date_trunc('day', now())), 0) AS today,
       count(*) FILTER (WHERE status = 'cached') AS cached,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE fallback_reason IS NOT NULL) AS fallbacks
FROM threadline.llm_calls
"""

# A scan of every call, acceptable while llm_calls is modest; a large ledger wants running
# totals kept at write time instead.
USAGE_TOTALS = """
SELECT coalesce(sum(input_tokens) FILTER (WHERE status <> 'cached'), 0) AS input_tokens,
       coalesce(sum(output_tokens) FILTER (WHERE status <> 'cached'), 0) AS output_tokens,
       coalesce(sum(cost_usd), 0) AS spend,
       coalesce(sum(cost_usd) FILTER (
           WHERE at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0
       ) AS today,
       count(*) FILTER (WHERE status = 'cached') AS cache_hits
FROM threadline.llm_calls
"""
SESSION_COSTS = """
SELECT session_id, coalesce(sum(cost_usd), 0) AS cost FROM threadline.llm_calls
WHERE session_id = ANY($1::text[]) GROUP BY session_id
"""

# What each `by` groups on; the key is shown as text.
GROUPINGS = {
    "model": "provider || ':' || model",
    "provider": "provider",
    "day": "to_char(date_trunc('day', at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')",
    "session": "coalesce(session_id, '(none)')",
    "tenant": "coalesce(tenant, '(none)')",
    "agent": "coalesce(agent, '(none)')",
    "user": "coalesce(user_id, '(none)')",
    "run": "coalesce(run_id, '(none)')",
}
# One statement per grouping, made once here: a column expression cannot be a parameter.
_COST_REPORT = """
SELECT {key} AS key, count(*) AS calls,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE status = 'cached') AS cached,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       coalesce(sum(cost_usd), 0) AS cost_usd,
       coalesce(sum(saved_usd), 0) AS saved_usd,
       count(*) FILTER (WHERE NOT priced) AS unpriced_calls,
       count(*) FILTER (WHERE estimated) AS estimated_calls
FROM threadline.llm_calls
WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::timestamptz IS NULL OR at < $2)
  AND ($3::text IS NULL OR tenant = $3)
GROUP BY 1 ORDER BY cost_usd DESC, key
"""
COST_REPORTS = {by: _COST_REPORT.format(key=key) for by, key in GROUPINGS.items()}
