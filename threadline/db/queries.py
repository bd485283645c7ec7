"""Every SQL statement of the db layer: the migrations' own table and the audit log."""

from __future__ import annotations

# -- migrations (threadline.schema_migrations) -------------------------------------------------

BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS threadline;
CREATE TABLE IF NOT EXISTS threadline.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""
HAS_MIGRATIONS_TABLE = "SELECT to_regclass('threadline.schema_migrations') IS NOT NULL"
APPLIED = "SELECT version, name, applied_at FROM threadline.schema_migrations"
RECORD_MIGRATION = (
    "INSERT INTO threadline.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
)
LOCK = "SELECT pg_advisory_lock($1)"
UNLOCK = "SELECT pg_advisory_unlock($1)"

# -- the audit log (threadline.audit_log) ---------------------------------------------------

RECORD_AUDIT = """
INSERT INTO threadline.audit_log (actor, action, target, detail, address)
VALUES ($1, $2, $3, $4::jsonb, $5)
"""
RECENT_AUDIT = """
SELECT * FROM threadline.audit_log
 WHERE ($2::text IS NULL OR action = $2) AND ($3::text IS NULL OR target = $3)
   AND ($4::text IS NULL OR actor = $4)
 ORDER BY id DESC LIMIT $1
"""
