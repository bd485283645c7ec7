-- Budgets: limits on spend per scope, the money reserved and spent against them, and the
-- router's per-model cooldowns. See docs/budgets.md.

-- Limits set at run time (Python API or CLI). A scope_key of '*' is the limit of every key of
-- that kind; a key's own limit replaces it. 'global' has the key ''.
CREATE TABLE threadline.budgets (
    scope_kind text NOT NULL CHECK (scope_kind IN
                   ('global', 'tenant', 'user', 'session', 'turn', 'run', 'step', 'agent',
                    'workflow')),
    scope_key  text NOT NULL,
    period     text NOT NULL CHECK (period IN ('total', 'daily')),
    limit_usd  numeric(20, 10) NOT NULL CHECK (limit_usd >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_kind, scope_key, period)
);

-- The money counted against one limit in one bucket: 'total', or the UTC day ('YYYY-MM-DD')
-- of a daily limit. Strict reservations keep spent_usd + reserved_usd <= limit_usd.
CREATE TABLE threadline.budget_usage (
    scope_kind    text NOT NULL,
    scope_key     text NOT NULL,
    bucket        text NOT NULL,
    limit_usd     numeric(20, 10) NOT NULL,  -- the limit in force at the last reservation
    spent_usd     numeric(20, 10) NOT NULL DEFAULT 0,
    reserved_usd  numeric(20, 10) NOT NULL DEFAULT 0 CHECK (reserved_usd >= 0),
    overshoot_usd numeric(20, 10) NOT NULL DEFAULT 0,  -- estimate mode: cost beyond reservations
    warned_pct    smallint NOT NULL DEFAULT 0,  -- the highest warning threshold announced
    calls         integer NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_kind, scope_key, bucket)
);

-- Processes holding reservations. One that stops heartbeating for lease_s seconds is dead:
-- its open reservations are settled at their worst case by whoever recovers them.
CREATE TABLE threadline.budget_holders (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    lease_s      double precision NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Open reservations: one per call in flight. Settling one deletes it, so it is settled once.
-- What the call is travels with it, for the ledger row recovery writes if its holder dies.
CREATE TABLE threadline.budget_reservations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    holder          bigint NOT NULL,
    amount_usd      numeric(20, 10) NOT NULL,
    scope_kinds     text[] NOT NULL,
    scope_keys      text[] NOT NULL,
    buckets         text[] NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('strict', 'estimate')),
    provider        text NOT NULL,
    model           text NOT NULL,
    requested_model text NOT NULL,
    attempt         integer NOT NULL,
    fallback_reason text,
    scope           jsonb NOT NULL,
    input_tokens    integer NOT NULL,
    max_tokens      integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX budget_reservations_holder ON threadline.budget_reservations (holder);

-- Ledger rows say which reservation they settled, what it held, and the prompt's size (from
-- which estimate mode learns each model's bytes per token).
ALTER TABLE threadline.llm_calls
    ADD COLUMN reservation_id bigint,
    ADD COLUMN reserved_usd   numeric(20, 10),
    ADD COLUMN input_bytes    integer;
CREATE UNIQUE INDEX llm_calls_reservation ON threadline.llm_calls (reservation_id)
    WHERE reservation_id IS NOT NULL;
CREATE INDEX llm_calls_calibration ON threadline.llm_calls (provider, model text_pattern_ops)
    WHERE input_bytes > 0 AND status = 'ok' AND NOT estimated;

-- The router's circuit breaker, shared by every process on this database. A model is cooling
-- down until `until`; after it, one caller at a time may probe it (half-open) until
-- `probe_until`; a success deletes the row (closed), a failure re-opens it for longer.
CREATE TABLE threadline.model_cooldowns (
    model       text PRIMARY KEY,  -- provider:model
    failures    integer NOT NULL,  -- consecutive failed openings: the cooldown doubles with each
    reason      text NOT NULL,
    until       timestamptz NOT NULL,
    probe_until timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
