"""`threadline costs`: what LLM calls cost, from the ledger."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta

import click
from rich.table import Table

from ..db.options import database_url_option as _db_url
from ..engine import Engine
from ..ledger import GROUPINGS, CostRow, Ledger
from .common import console, run_coroutine, with_engine

__all__ = ["costs", "parse_since"]


def parse_since(value: str | None) -> datetime | None:
    """An ISO date or time (UTC unless it says otherwise), or a span back from now: 30m, 24h, 7d."""
    if value is None:
        return None
    span = re.fullmatch(r"(\d+)([mhdw])", value.strip())
    if span:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[span[2]]
        return datetime.now(UTC) - timedelta(**{unit: int(span[1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO date/time nor a span like 7d", param_hint="--since"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.command()
@_db_url
@click.option("--by", type=click.Choice(sorted(GROUPINGS)), default="model", show_default=True)
@click.option("--since", default=None, help="ISO date/time, or a span back from now: 24h, 7d.")
@click.option("--until", default=None, help="ISO date/time (exclusive).")
@click.option("--tenant", default=None, help="Only this tenant's calls.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def costs(
    database_url: str | None,
    by: str,
    since: str | None,
    until: str | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """What LLM calls cost, from the ledger, grouped --by model, day, session, tenant, ..."""
    start, end = parse_since(since), parse_since(until)

    async def go(e: Engine) -> list[CostRow]:
        return await Ledger(e.pool).report(by, since=start, until=end, tenant=tenant)

    rows = run_coroutine(with_engine(Engine(database_url, worker=False), go))
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], default=str))
        return
    table = Table(by, "calls", "errors", "cached", "input tok", "output tok", "cost $", "saved $")
    for r in rows:
        cost = f"{r.cost_usd:.6f}" + (
            f" (+{r.unpriced_calls} unpriced)" if r.unpriced_calls else ""
        )
        table.add_row(
            r.key,
            str(r.calls),
            str(r.errors),
            str(r.cached),
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
            cost,
            f"{r.saved_usd:.6f}",
        )
    console.print(table)
    if not rows:
        console.print("no LLM calls recorded in this period")
