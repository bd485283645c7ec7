-- The engine's step records written from another layer's statement (a model call's ledger
-- row and its step's record, one statement, one round trip): the engine's own SQL for its own
-- table, fenced as its journal fences its records. Arrays: run ids, step numbers, names,
-- outputs and errors (JSON text), and the owner each record claims; the records of runs not
-- running under that owner are not written. Returns those written.
CREATE FUNCTION threadline.write_steps(
    run_ids text[], step_nos int[], names text[], outputs text[], errors text[], owners int[]
) RETURNS TABLE (run_id text, step_no int)
LANGUAGE sql VOLATILE AS $$
    INSERT INTO threadline.steps (run_id, step_no, name, output, error)
    SELECT s.run_id, s.step_no, s.name, s.output::jsonb, s.error::jsonb
    FROM unnest(run_ids, step_nos, names, outputs, errors, owners)
         AS s(run_id, step_no, name, output, error, owner)
    WHERE EXISTS (SELECT 1 FROM threadline.runs r
                  WHERE r.id = s.run_id AND r.owner = s.owner AND r.status = 'running')
    ON CONFLICT DO NOTHING
    RETURNING steps.run_id, steps.step_no
$$;
