-- The cost ledger: one row per LLM call, whatever its outcome.
CREATE TABLE threadline.llm_calls (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT now(),
    -- scopes
    tenant             text,
    user_id            text,
    session_id         text,
    turn_id            text,
    run_id             text,
    step_no            integer,
    agent              text,
    -- what was asked, what answered
    provider           text NOT NULL,
    requested_model    text NOT NULL,
    model              text NOT NULL,
    attempt            integer NOT NULL DEFAULT 1,
    status             text NOT NULL CHECK (status IN ('ok', 'error', 'cancelled', 'cached')),
    stop_reason        text,
    error_code         text,
    fallback_reason    text,
    -- usage and money (cost NULL: the model has no known price)
    input_tokens       integer NOT NULL DEFAULT 0,
    output_tokens      integer NOT NULL DEFAULT 0,
    cache_read_tokens  integer NOT NULL DEFAULT 0,
    cache_write_tokens integer NOT NULL DEFAULT 0,
    reasoning_tokens   integer NOT NULL DEFAULT 0,
    cost_usd           numeric(20, 10),
    saved_usd          numeric(20, 10) NOT NULL DEFAULT 0,
    priced             boolean NOT NULL,
    estimated          boolean NOT NULL DEFAULT false,
    latency_ms         double precision NOT NULL,
    ttft_ms            double precision
);
CREATE INDEX llm_calls_at ON threadline.llm_calls (at);
CREATE INDEX llm_calls_tenant ON threadline.llm_calls (tenant, at);
CREATE INDEX llm_calls_session ON threadline.llm_calls (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX llm_calls_run ON threadline.llm_calls (run_id) WHERE run_id IS NOT NULL;
