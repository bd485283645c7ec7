"""`threadline db ...`: the database schema, its migrations applied and listed."""

from __future__ import annotations

import click
from rich.table import Table

from .. import db
from ..db.options import database_url_option as _db_url
from .common import console, run_coroutine

__all__ = ["db_group"]


@click.group("db")
def db_group() -> None:
    """Database schema: apply and list migrations."""


@db_group.command("upgrade")
@_db_url
def db_upgrade(database_url: str | None) -> None:
    """Apply pending migrations (safe to run from many processes at once)."""

    async def go() -> None:
        # Under a session's advisory lock: PostgreSQL itself, not a pooler in transaction mode.
        url = db.direct_database_url() or db.resolve_database_url(database_url)
        conn = await db.connect(url)
        try:
            done = await db.upgrade(conn)
        finally:
            await conn.close()
        if done:
            for m in done:
                console.print(f"applied {m.version:04d}_{m.name}")
        else:
            console.print("the schema is up to date")

    run_coroutine(go())


@db_group.command("status")
@_db_url
def db_status(database_url: str | None) -> None:
    """List applied and pending migrations."""

    async def go() -> None:
        url = db.resolve_database_url(database_url)
        conn = await db.connect(url)
        try:
            states = await db.status(conn)
        finally:
            await conn.close()
        table = Table("migration", "name", "state")
        for s in states:
            state = "pending" if s.applied_at is None else f"applied {s.applied_at:%Y-%m-%d %H:%M}"
            if not s.known:
                state += " (unknown to this version of threadline)"
            table.add_row(f"{s.version:04d}", s.name, state)
        console.print(table)

    run_coroutine(go())
