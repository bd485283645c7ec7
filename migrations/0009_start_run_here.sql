-- A run of a limited queue (a session's turn) started by a process with a free slot: inserted
-- and, when its queue's caps let it start now, claimed by that process in the same statement:
-- one round trip and one commit, no NOTIFY and claim round trip before it starts. The same
-- advisory lock as the workers' claim (threadline/engine/store.py) keeps the caps exact; in
-- PL/pgSQL each statement after the lock sees what was committed before it was taken.
-- Returns 'exists' (the id was taken: nothing changed), 'pending' or 'running'.
CREATE INDEX runs_in_progress_by_key ON threadline.runs (queue, queue_key)
    WHERE status IN ('pending', 'running', 'waiting');

CREATE FUNCTION threadline.start_run_here(
    p_id text, p_workflow text, p_version text, p_input jsonb, p_queue text, p_key text,
    p_parent text, p_owner integer, p_per_key integer, p_concurrency integer
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(p_queue));
    INSERT INTO threadline.runs (id, workflow, app_version, status, input, queue, queue_key,
                                 parent_id)
    VALUES (p_id, p_workflow, p_version, 'pending', p_input, p_queue, p_key, p_parent)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'exists';
    END IF;
    -- Its key's other runs in progress or waiting to start all go first.
    IF p_per_key IS NOT NULL AND p_key IS NOT NULL THEN
        SELECT count(*) INTO n FROM threadline.runs
        WHERE queue = p_queue AND queue_key = p_key AND id <> p_id
          AND status IN ('pending', 'running', 'waiting');
        IF n + 1 > p_per_key THEN
            RETURN 'pending';
        END IF;
    END IF;
    -- Under a queue-wide cap, a run waiting to start (any key) keeps its place ahead of it.
    IF p_concurrency IS NOT NULL THEN
        SELECT count(*) INTO n FROM threadline.runs
        WHERE queue = p_queue AND id <> p_id AND status IN ('pending', 'running');
        IF n + 1 > p_concurrency THEN
            RETURN 'pending';
        END IF;
    END IF;
    UPDATE threadline.runs SET status = 'running', owner = p_owner, started_at = now()
    WHERE id = p_id;
    RETURN 'running';
END
$$;
