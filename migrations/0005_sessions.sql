-- Durable conversations: sessions, their messages, and their ordered event log.
CREATE TABLE threadline.sessions (
    id              text PRIMARY KEY,
    agent           text NOT NULL,
    tenant          text,
    user_id         text,
    state           text NOT NULL,
    data            jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'handoff', 'closed')),
    event_seq       bigint NOT NULL DEFAULT 0,   -- the last event's sequence number
    message_seq     integer NOT NULL DEFAULT 0,  -- the last message's number
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_user_at    timestamptz
);
CREATE INDEX sessions_tenant ON threadline.sessions (tenant, updated_at DESC);

CREATE TABLE threadline.session_messages (
    session_id  text NOT NULL REFERENCES threadline.sessions (id) ON DELETE CASCADE,
    seq         integer NOT NULL,
    role        text NOT NULL CHECK (role IN ('user', 'assistant', 'operator', 'system')),
    content     text NOT NULL,
    client_id   text,
    turn_id     text,
    reply_to    integer,  -- the user message an answer replies to: orders the conversation
    meta        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
);
CREATE UNIQUE INDEX session_messages_client ON threadline.session_messages (session_id, client_id)
    WHERE client_id IS NOT NULL;

CREATE TABLE threadline.session_events (
    session_id  text NOT NULL REFERENCES threadline.sessions (id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    type        text NOT NULL,
    data        jsonb NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
);
