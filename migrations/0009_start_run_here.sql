-- A run of a limited queue (a session's turn) started by a process with a free slot: inserted
-- and, when its queue's caps let it start now, claimed by that process in the same statement:
-- one round trip and one commit, no NOTIFY and claim round trip before it starts. The same
-- advisory lock as the workers' claim (threadline/engine/store.py) keeps the caps exact; in
-- PL/pgSQL each statement after the lock sees what was committed before it was taken.
-- Returns 'exists' (the id was taken: nothing changed), 'pending', 'running', or with
-- `p_only_here` 'busy' (it could not start now: nothing was inserted).
CREATE INDEX runs_in_progress_by_key ON threadline.runs (queue, queue_key)
    WHERE status IN ('pending', 'running', 'waiting');

CREATE FUNCTION threadline.start_run_here(
    p_id text, p_workflow text, p_version text, p_input jsonb, p_queue text, p_key text,
    p_parent text, p_owner integer, p_per_key integer, p_concurrency integer,
    p_only_here boolean
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    may_start boolean := true;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(p_queue));
    -- Its key's other runs in progress or waiting to start all go first.
    IF p_per_key IS NOT NULL AND p_key IS NOT NULL THEN
        SELECT count(*) INTO n FROM threadline.runs
        WHERE queue = p_queue AND queue_key = p_key AND id <> p_id
          AND status IN ('pending', 'running', 'waiting');
        may_start := n + 1 <= p_per_key;
    END IF;
    -- Under a queue-wide cap, a run waiting to start (any key) keeps its place ahead of it.
    IF may_start AND p_concurrency IS NOT NULL THEN
        SELECT count(*) INTO n FROM threadline.runs
        WHERE queue = p_queue AND id <> p_id AND status IN ('pending', 'running');
        may_start := n + 1 <= p_concurrency;
    END IF;
    IF NOT may_start AND p_only_here THEN
        RETURN CASE WHEN EXISTS (SELECT 1 FROM threadline.runs WHERE id = p_id)
                    THEN 'exists' ELSE 'busy' END;
    END IF;
    INSERT INTO threadline.runs (id, workflow, app_version, status, input, queue, queue_key,
                                 parent_id, owner, started_at)
    VALUES (p_id, p_workflow, p_version, CASE WHEN may_start THEN 'running' ELSE 'pending' END,
            p_input, p_queue, p_key, p_parent, CASE WHEN may_start THEN p_owner END,
            CASE WHEN may_start THEN now() END)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'exists';
    END IF;
    RETURN CASE WHEN may_start THEN 'running' ELSE 'pending' END;
END
$$;
