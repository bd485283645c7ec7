"""`threadline keys ...`: API keys for a site's backend (create, list, revoke); `threadline
audit`: the audit log of what the admin, operators and backends did."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..db import audit
from ..db.options import database_url_option as _db_url
from ..engine import Engine
from ..errors import ThreadlineError
from ..loop import run as run_loop
from .keys import ApiKey, ApiKeys

T = TypeVar("T")
console = Console()


def _with_keys(database_url: str | None, fn: Callable[[ApiKeys], Awaitable[T]]) -> T:
    async def go() -> T:
        async with Engine(database_url, worker=False) as engine:
            return await fn(ApiKeys(engine.pool))

    try:
        return run_loop(go())
    except ThreadlineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@click.group("keys")
def keys_group() -> None:
    """API keys: a site's backend creates sessions for its signed-in users with one."""


@keys_group.command("create")
@_db_url
@click.option("--tenant", required=True, help="The tenant whose sessions the key creates.")
@click.option("--name", default="", help="What the key is for (shown in lists).")
def create(database_url: str | None, tenant: str, name: str) -> None:
    """Make a key and print it once: keep it in your backend's secrets."""

    async def go(keys: ApiKeys) -> tuple[ApiKey, str]:
        made, key = await keys.create(tenant, name)
        await audit.record(
            keys.pool, audit.cli_actor(), "key.created", f"key:{made.prefix}", {"tenant": tenant}
        )
        return made, key

    record, key = _with_keys(database_url, go)
    click.echo(key)
    click.echo(f"key {record.id} ({record.prefix}…) of tenant {tenant!r}: shown once", err=True)


@keys_group.command("list")
@_db_url
@click.option("--tenant", default=None, help="Only this tenant's keys.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_keys(database_url: str | None, tenant: str | None, as_json: bool) -> None:
    """Keys with their tenant, last use and whether they are revoked (never the keys)."""
    found: list[ApiKey] = _with_keys(database_url, lambda keys: keys.list(tenant))
    if as_json:
        click.echo(json.dumps([k.to_json() for k in found]))
        return
    table = Table("id", "prefix", "tenant", "name", "created", "last used", "revoked")
    for k in found:
        table.add_row(
            str(k.id),
            k.prefix,
            k.tenant,
            k.name,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-",
        )
    console.print(table)


@keys_group.command("revoke")
@_db_url
@click.argument("key")
def revoke(database_url: str | None, key: str) -> None:
    """Refuse the key KEY (its id or prefix) from now on."""

    async def go(keys: ApiKeys) -> ApiKey | None:
        found = await keys.revoke(key)
        if found is not None:
            target, tenant = f"key:{found.prefix}", {"tenant": found.tenant}
            await audit.record(keys.pool, audit.cli_actor(), "key.revoked", target, tenant)
        return found

    revoked = _with_keys(database_url, go)
    if revoked is None:
        click.echo(f"error: no live key {key!r}", err=True)
        sys.exit(1)
    click.echo(f"revoked key {revoked.id} ({revoked.prefix}…) of tenant {revoked.tenant!r}")


@click.command("audit")
@_db_url
@click.option("--action", default=None, help="Only this action (key.created, session.read, …).")
@click.option("--target", default=None, help="Only this target (session:ID, key:PREFIX, …).")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def audit_command(
    database_url: str | None, action: str | None, target: str | None, limit: int, as_json: bool
) -> None:
    """What the admin, operators and tenants' backends did, latest first."""
    found = _with_keys(
        database_url,
        lambda keys: audit.recent(keys.pool, limit=limit, action=action, target=target),
    )
    if as_json:
        click.echo(json.dumps([e.to_json() for e in found]))
        return
    table = Table("when", "who", "action", "target", "detail", "from")
    for e in found:
        detail = " ".join(f"{k}={v}" for k, v in e.detail.items())
        table.add_row(
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            escape(e.actor),
            e.action,
            escape(e.target),
            escape(detail),
            e.address or "",
        )
    console.print(table)
