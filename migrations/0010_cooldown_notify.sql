-- Every change to the models' cooldowns is announced, so that processes can keep the set of
-- models with a cooldown in memory and route calls to healthy models without a round trip
-- (threadline/router/cooldowns.py, threadline/engine/mirror.py).
CREATE FUNCTION threadline.cooldowns_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('threadline_cooldowns', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER cooldowns_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON threadline.model_cooldowns
    FOR EACH STATEMENT EXECUTE FUNCTION threadline.cooldowns_changed();
