-- What the admin, operators and tenants' backends did: keys made and revoked, sessions'
-- tokens issued and revoked, transcripts read, operator replies, budgets changed, dashboard
-- logins (threadline/db/audit.py). Rows are added, never changed: an update is refused.
-- Old rows may be deleted (a retention policy), which is itself done with the database's
-- own credentials, outside threadline.
CREATE TABLE threadline.audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text NOT NULL DEFAULT '',
    detail  jsonb NOT NULL DEFAULT '{}',
    address text
);
CREATE INDEX audit_log_at ON threadline.audit_log (at);
CREATE INDEX audit_log_target ON threadline.audit_log (target, at);

CREATE FUNCTION threadline.audit_log_unchanged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: rows are never changed';
END $$;
CREATE TRIGGER audit_log_unchanged BEFORE UPDATE ON threadline.audit_log
    FOR EACH ROW EXECUTE FUNCTION threadline.audit_log_unchanged();
