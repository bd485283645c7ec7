-- Dashboard login links `threadline serve` logs: each works once, whichever process of the
-- server (or node behind a load balancer) it reaches. Only a hash of the link's token is kept.
CREATE TABLE threadline.login_links (
    token_hash text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
