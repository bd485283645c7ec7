-- Every change to the limits set at run time is announced, so that processes can keep the set
-- of limited scopes in memory and admit calls under no limit without a round trip
-- (threadline/ledger/limit_index.py).
CREATE FUNCTION threadline.budgets_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('threadline_budgets', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER budgets_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON threadline.budgets
    FOR EACH STATEMENT EXECUTE FUNCTION threadline.budgets_changed();
