-- What a user makes of a conversation: its title (renamed in the full-page chat) and a thumbs
-- up or down per answer, shown on the dashboard.
ALTER TABLE threadline.sessions ADD COLUMN title text;

CREATE TABLE threadline.session_feedback (
    session_id  text NOT NULL REFERENCES threadline.sessions (id) ON DELETE CASCADE,
    turn_id     text NOT NULL,
    rating      smallint NOT NULL CHECK (rating IN (-1, 1)),
    comment     text,
    agent       text NOT NULL,
    tenant      text,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, turn_id)
);
CREATE INDEX session_feedback_recent ON threadline.session_feedback (at DESC);
