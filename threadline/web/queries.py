"""The SQL of the web layer's own tables (migrations 0017 and 0020): tenants' API keys
(keys.py) and dashboard login links (login_links.py); and the readiness probe's round trip
(health.py). What web shows of other layers' tables it asks of their report functions."""

PING = "SELECT 1"

# -- api_keys ---------------------------------------------------------------------------------

CREATE_KEY = """
INSERT INTO threadline.api_keys (tenant, name, prefix, key_hash) VALUES ($1, $2, $3, $4)
RETURNING *
"""
FIND_KEY = "SELECT * FROM threadline.api_keys WHERE prefix = $1"
# $2: seconds; `last_used_at` is written at most that often per key.
KEY_USED = """
UPDATE threadline.api_keys SET last_used_at = now()
 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))
"""
LIST_KEYS = """
SELECT * FROM threadline.api_keys WHERE $1::text IS NULL OR tenant = $1 ORDER BY id
"""
REVOKE_KEY = """
UPDATE threadline.api_keys SET revoked_at = now()
 WHERE (id::text = $1 OR prefix = $1) AND revoked_at IS NULL
RETURNING *
"""

# -- login_links ------------------------------------------------------------------------------

LOGIN_LINK_VALID_FOR = "1 day"
MAKE_LOGIN_LINK = "INSERT INTO threadline.login_links (token_hash) VALUES ($1)"
REDEEM_LOGIN_LINK = f"""
UPDATE threadline.login_links SET used_at = now()
 WHERE token_hash = $1 AND used_at IS NULL
   AND created_at > now() - interval '{LOGIN_LINK_VALID_FOR}'
RETURNING 1
"""
