-- Where an anonymous session came from (a keyed hash of its client address, an IPv6 client by
-- its /64), so that an agent can give each address a share of its daily budget
-- (`Budget(per_client_daily=...)`): one client cannot spend what every user shares.
ALTER TABLE threadline.sessions ADD COLUMN client text;

ALTER TABLE threadline.budgets DROP CONSTRAINT budgets_scope_kind_check;
ALTER TABLE threadline.budgets ADD CONSTRAINT budgets_scope_kind_check CHECK (scope_kind IN
    ('global', 'tenant', 'user', 'session', 'turn', 'run', 'step', 'agent', 'workflow',
     'client'));
