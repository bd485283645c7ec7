"""Numbered SQL migrations: listed from the package, applied in order under an advisory lock.

Files are named `NNNN_description.sql`. Each is applied in its own transaction and recorded in
`threadline.schema_migrations` with its checksum, so `upgrade` is idempotent and safe to run from
many processes at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from ..errors import SchemaError
from . import queries
from .connect import Connection

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# A fixed key for pg_advisory_lock: "tl" "mg" in ASCII.
_LOCK_KEY = 0x746C6D67


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    version: int
    name: str
    applied_at: datetime | None  # None: pending
    known: bool = True  # False: applied in the database but unknown to this code


def migrations_dir() -> Path:
    """`threadline/migrations` inside a wheel, the repository's `migrations/` in a checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if candidate.is_dir():
            return candidate
    raise SchemaError(f"no migrations folder found next to {package}")


def load_migrations(folder: Path | None = None) -> list[Migration]:
    found = []
    for path in sorted((folder or migrations_dir()).iterdir()):
        match = _FILE.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise SchemaError(f"two migrations share a number in {folder or migrations_dir()}")
    return found


async def _applied(conn: Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval(queries.HAS_MIGRATIONS_TABLE)
    if not exists:
        return {}
    rows = await conn.fetch(queries.APPLIED)
    return {row["version"]: row for row in rows}


async def status(conn: Connection, folder: Path | None = None) -> list[MigrationState]:
    """Every migration known to the code or the database, oldest first."""
    known = {m.version: m for m in load_migrations(folder)}
    applied = await _applied(conn)
    states = [
        MigrationState(
            m.version, m.name, applied[m.version]["applied_at"] if m.version in applied else None
        )
        for m in known.values()
    ]
    states += [
        MigrationState(v, row["name"], row["applied_at"], known=False)
        for v, row in applied.items()
        if v not in known
    ]
    return sorted(states, key=lambda s: s.version)


def check_not_newer(states: list[MigrationState]) -> None:
    unknown = [s for s in states if not s.known]
    if unknown:
        newest = max(s.version for s in unknown)
        code = max((s.version for s in states if s.known), default=0)
        raise SchemaError(
            f"the database schema is at migration {newest}, newer than this threadline "
            f"(which knows up to {code}); upgrade threadline instead of downgrading the database"
        )


async def upgrade(conn: Connection, folder: Path | None = None) -> list[Migration]:
    """Apply pending migrations; returns those applied by this call."""
    await conn.execute(queries.LOCK, _LOCK_KEY)
    try:
        await conn.execute(queries.BOOTSTRAP)
        check_not_newer(await status(conn, folder))
        applied = await _applied(conn)
        done = []
        for migration in load_migrations(folder):
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    queries.RECORD_MIGRATION,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            done.append(migration)
        return done
    finally:
        await conn.execute(queries.UNLOCK, _LOCK_KEY)


async def pending(conn: Connection, folder: Path | None = None) -> list[MigrationState]:
    states = await status(conn, folder)
    check_not_newer(states)
    return [s for s in states if s.applied_at is None]
