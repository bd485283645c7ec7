-- The durable workflow engine: runs, their step journal, mailboxes, event logs and workers.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE threadline.workers (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host        text NOT NULL,
    pid         integer NOT NULL,
    app_version text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at  timestamptz
);

-- status: pending -> running -> (waiting -> pending -> running)* -> succeeded | failed | cancelled
CREATE TABLE threadline.runs (
    id            text PRIMARY KEY,
    workflow      text NOT NULL,
    app_version   text NOT NULL,
    status        text NOT NULL CHECK (status IN
                      ('pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    input         jsonb NOT NULL,
    output        jsonb,
    error         jsonb,
    queue         text NOT NULL DEFAULT 'default',
    queue_key     text,
    parent_id     text,
    owner         integer,
    wake_at       timestamptz,
    waiting_topic text,
    waiting_step  integer,
    recoveries    integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX runs_pending ON threadline.runs (queue, created_at) WHERE status = 'pending';
CREATE INDEX runs_waiting ON threadline.runs (wake_at) WHERE status = 'waiting';
CREATE INDEX runs_running ON threadline.runs (owner) WHERE status = 'running';
CREATE INDEX runs_parent ON threadline.runs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_created ON threadline.runs (created_at DESC);

-- One row per finished step, written before the next step starts. `kind` is step, sleep,
-- receive, send, child, wait or emit-free control records; `error` is set when it failed.
CREATE TABLE threadline.steps (
    run_id     text NOT NULL,
    step_no    integer NOT NULL,
    name       text NOT NULL,
    output     jsonb,
    error      jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step_no)
);

CREATE TABLE threadline.messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          text NOT NULL,
    topic           text NOT NULL,
    payload         jsonb NOT NULL,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    consumed_at     timestamptz
);
CREATE INDEX messages_unread ON threadline.messages (run_id, topic, id) WHERE consumed_at IS NULL;
CREATE UNIQUE INDEX messages_idempotency ON threadline.messages (run_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE threadline.events (
    run_id  text NOT NULL,
    seq     integer NOT NULL,
    kind    text NOT NULL,
    data    jsonb NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);
