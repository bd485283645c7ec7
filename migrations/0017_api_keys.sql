-- Keys a site's backend holds to create sessions for its signed-in users, one tenant each
-- (threadline/web/keys.py). Only a hash of the key is kept; `prefix` finds the row and is
-- what lists show.
CREATE TABLE threadline.api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text NOT NULL CHECK (tenant <> ''),
    name         text NOT NULL DEFAULT '',
    prefix       text NOT NULL UNIQUE,
    key_hash     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_tenant ON threadline.api_keys (tenant, created_at);

-- Tokens name the generation they were issued in; revoking a session's tokens moves it on.
ALTER TABLE threadline.sessions ADD COLUMN token_generation integer NOT NULL DEFAULT 0;
