-- An event that a replayed turn would log again (its `message.end`, a tool call and its
-- result) carries a key, unique in its session: the log keeps the first and numbers only
-- events it keeps, so replays add no duplicates and no gaps (threadline/sessions/events.py).
ALTER TABLE threadline.session_events ADD COLUMN key text;
CREATE UNIQUE INDEX session_events_key ON threadline.session_events (session_id, key)
    WHERE key IS NOT NULL;
