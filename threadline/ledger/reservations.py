"""The SQL of reservations: reserve before a call, settle after it, recover a dead holder's.

Reserving is one statement over every counter the call falls under: it locks the counters
that have a limit (in key order, so concurrent reservations never deadlock), finds the least
headroom among them, and — only if the call fits every one with at least its minimum of output
tokens — adds the same amount to each counter's `reserved_usd` and records the reservation.
All counters or none. Under READ COMMITTED the lock returns each counter's latest committed
values, so the check and the update see the same money.

Settling deletes the reservation (so it is settled exactly once, by the call or by recovery,
whichever comes first) and moves its amount from `reserved_usd` to `spent_usd` at the actual
cost, in the same transaction as the call's ledger row. Recovery settles a dead holder's
reservation at what its call had streamed when the holder last reported it, else at its
worst case.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Any

from ..db.connect import Connection
from .limits import Counter, ScopeRef
from .outcomes import BudgetNotice, CallInfo, Grant, Refusal, Settled

__all__ = ["PROGRESS", "applicable", "recover", "reserve", "settle"]


def _threshold(spent: str, limit: str) -> str:
    """The highest warning threshold (50, 80, 100 %) that `spent` has reached."""
    return (
        f"CASE WHEN {limit} <= 0 THEN 0 WHEN {spent} >= {limit} THEN 100 "
        f"WHEN {spent} >= 0.8 * {limit} THEN 80 WHEN {spent} >= 0.5 * {limit} THEN 50 ELSE 0 END"
    )


# The counters of a call that have a limit: a key's own run-time limit, else the lower of the
# declared one and the kind's '*' limit. $1..$5: the call's candidate counters.
_LIMITED = """
candidate AS (
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
SEED = f"""
WITH {_LIMITED}
INSERT INTO threadline.budget_usage (scope_kind, scope_key, bucket, limit_usd)
SELECT scope_kind, scope_key, bucket, limit_usd FROM limited
ORDER BY scope_kind, scope_key, bucket
ON CONFLICT DO NOTHING
"""

APPLICABLE = f"WITH {_LIMITED} SELECT count(*) FROM limited"

# $6: the call's fixed worst-case cost (its input), $7: the worst-case price of one output
# token, $8/$9: the most / fewest output tokens wanted, $10: the holder, $11..: the call.
RESERVE = f"""
WITH {_LIMITED},
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
                          ELSE {_threshold("u.spent_usd", "l.limit_usd")} END
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

# Moves what the reservations in `done` held to what they cost, counter by counter (each
# locked in key order), and reports the counters that crossed a warning threshold or were
# overshot (estimate mode).
_CHARGE = f"""
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
        warned_pct = greatest(u.warned_pct, {_threshold("u.spent_usd + c.charged", "u.limit_usd")}),
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
SETTLE = f"""
WITH done AS (
    DELETE FROM threadline.budget_reservations r
    USING unnest($1::bigint[], $2::numeric[]) AS s(id, actual_usd)
    WHERE r.id = s.id
    RETURNING r.id, r.amount_usd, coalesce(s.actual_usd, r.amount_usd) AS actual_usd,
              r.scope_kinds, r.scope_keys, r.buckets
), {_CHARGE}
"""

# The open reservations of holders that stopped heartbeating are settled, each with a ledger
# row saying so (`interrupted`, `estimated`): a call whose holder reported what it had streamed
# (`progress`) at its input and the output tokens seen, any other at its worst case.
# $1: the recovering holder (never itself), $2: batch size.
RECOVER = f"""
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
), {_CHARGE}
"""

# What the calls of open reservations have streamed so far: $1 ids, $2 input, $3 output tokens.
PROGRESS = """
UPDATE threadline.budget_reservations r SET input_seen = p.input, output_seen = p.output
FROM unnest($1::bigint[], $2::int[], $3::int[]) AS p(id, input, output) WHERE r.id = p.id
"""

FORGET_DEAD_HOLDERS = """
DELETE FROM threadline.budget_holders h
WHERE h.id <> $1 AND h.heartbeat_at < now() - make_interval(secs => h.lease_s)
  AND NOT EXISTS (SELECT 1 FROM threadline.budget_reservations r WHERE r.holder = h.id)
"""


def _counter_args(counters: Sequence[Counter]) -> list[Any]:
    return [
        [c.kind for c in counters],
        [c.key for c in counters],
        [c.period for c in counters],
        [c.bucket for c in counters],
        [c.declared_usd for c in counters],
    ]


async def applicable(conn: Connection, counters: Sequence[Counter]) -> bool:
    """Whether any of these counters has a limit."""
    found: int = await conn.fetchval(APPLICABLE, *_counter_args(counters))
    return found > 0


async def reserve(
    conn: Connection,
    counters: Sequence[Counter],
    *,
    fixed_usd: Decimal,
    per_token_usd: Decimal,
    max_tokens: int,
    min_tokens: int,
    holder: int,
    call: CallInfo,
) -> Grant | Refusal:
    """Reserve the call's worst case on every limited counter, lowering its output tokens to
    what the tightest affords (never below `min_tokens`); or say why it does not fit."""
    args = _counter_args(counters)
    extra = [fixed_usd, per_token_usd, max_tokens, min_tokens, holder, *call.args()]
    needed = _ceil_usd(fixed_usd + per_token_usd * min_tokens)
    for _ in range(3):
        row = await conn.fetchrow(RESERVE, *args, *extra)
        assert row is not None  # one row, always
        if row["wanted"] == 0:
            return Grant(max_tokens)  # no limit applies to this call
        if row["found"] == row["wanted"]:
            break
        await conn.execute(SEED, *args)  # a counter's first call: create its row, then retry
    else:  # pragma: no cover - counters would have to vanish as fast as they are created
        raise RuntimeError("budget counters disappeared while reserving")
    if row["reservation_id"] is not None:
        return Grant(row["tokens"], row["reservation_id"], row["amount"])
    locked: list[dict[str, Any]] = json.loads(row["counters"])
    return _refusal(min(locked, key=_headroom), needed)


def _ceil_usd(value: Decimal) -> Decimal:
    return value.quantize(Decimal("1e-10"), rounding=ROUND_CEILING)


def _headroom(counter: dict[str, Any]) -> Decimal:
    return (
        Decimal(str(counter["limit"]))
        - Decimal(str(counter["spent"]))
        - Decimal(str(counter["reserved"]))
    )


def _refusal(counter: dict[str, Any], needed: Decimal, reason: str = "budget") -> Refusal:
    return Refusal(
        scope=str(ScopeRef(counter["kind"], counter["key"])),
        bucket=counter["bucket"],
        limit_usd=Decimal(str(counter["limit"])),
        spent_usd=Decimal(str(counter["spent"])),
        reserved_usd=Decimal(str(counter["reserved"])),
        needed_usd=needed,
        reason=reason,
    )


def _settled(rows: Sequence[Any]) -> Settled:
    result = Settled()
    first_touch: dict[tuple[str, str, str], int] = {}
    for row in rows:
        if row["reservation_id"] is None:
            continue
        result.reservations.add(row["reservation_id"])
        for key in zip(row["scope_kinds"], row["scope_keys"], row["buckets"], strict=True):
            first_touch.setdefault(key, row["reservation_id"])
    for row in rows:
        if row["reservation_id"] is not None:
            continue
        key = (row["scope_kind"], row["scope_key"], row["bucket"])
        owner = first_touch.get(key, 0)
        result.notices.setdefault(owner, []).extend(_notices(row))
    return result


def _notices(row: Any) -> list[BudgetNotice]:
    scope = str(ScopeRef(row["scope_kind"], row["scope_key"]))
    common = (scope, row["bucket"], row["limit_usd"], row["spent_usd"])
    found = [
        BudgetNotice(*common, threshold=t)
        for t in (50, 80, 100)
        if row["warned_before"] < t <= row["warned_after"]
    ]
    if row["overshoot"] and row["overshoot"] > 0:
        found.append(BudgetNotice(*common, overshoot_usd=row["overshoot"]))
    return found


async def settle(
    conn: Connection, reservations: Sequence[int], actual_usd: Sequence[Decimal | None]
) -> Settled:
    """Settle reservations at their actual cost (None: at what they reserved)."""
    return _settled(await conn.fetch(SETTLE, list(reservations), list(actual_usd)))


async def recover(conn: Connection, holder: int, batch: int = 500) -> Settled:
    """Settle, at their worst case, the open reservations of holders that are gone."""
    result = _settled(await conn.fetch(RECOVER, holder, batch))
    await conn.execute(FORGET_DEAD_HOLDERS, holder)
    return result
