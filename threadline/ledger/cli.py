"""`threadline budgets ...`: set, change, remove and inspect budgets; recover reservations."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from decimal import Decimal
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from ..db import audit
from ..db.options import database_url_option as _db_url
from ..engine import Engine
from ..errors import ThreadlineError
from ..loop import run as run_loop
from .budgets import Budgets, BudgetState

T = TypeVar("T")
console = Console()

_daily = click.option("--daily", is_flag=True, help="A limit per UTC day instead of in total.")


def _with_budgets(database_url: str | None, fn: Callable[[Budgets], Awaitable[T]]) -> T:
    async def go() -> T:
        async with Engine(database_url, worker=False) as engine:
            return await fn(Budgets(engine.pool))

    try:
        return run_loop(go())
    except (ThreadlineError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _usd(value: Any) -> str:
    return "-" if value is None else f"{value:.6f}"


def _table(states: list[BudgetState]) -> Table:
    columns = ("scope", "period", "limit $", "spent $", "reserved $", "left $", "calls", "warned")
    table = Table(*columns)
    for s in states:
        table.add_row(
            s.scope,
            s.bucket if s.period == "daily" else "total",
            _usd(s.limit_usd) + ("" if s.set_usd is not None else " (declared)"),
            _usd(s.spent_usd),
            _usd(s.reserved_usd),
            _usd(s.remaining_usd),
            str(s.calls),
            f"{s.warned_pct}%" if s.warned_pct else "",
        )
    return table


def _plain(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _print(states: list[BudgetState], as_json: bool) -> None:
    if as_json:
        rows = [
            asdict(s) | {"period": s.period, "limit_usd": s.limit_usd, "left_usd": s.remaining_usd}
            for s in states
        ]
        click.echo(json.dumps(rows, default=_plain))
    elif states:
        console.print(_table(states))
    else:
        console.print("no budgets")


@click.group("budgets")
def budgets_group() -> None:
    """Budgets: limits on what LLM calls may spend, per scope (global, tenant:KEY, user:KEY,
    session:KEY, turn:KEY, run:KEY, step:KEY, agent:KEY, workflow:KEY; KEY * for every key)."""


@budgets_group.command("set")
@click.argument("scope")
@click.argument("usd")
@_daily
@_db_url
def budgets_set(scope: str, usd: str, daily: bool, database_url: str | None) -> None:
    """Set or change the limit of SCOPE to USD dollars."""
    period = "daily" if daily else "total"

    async def go(budgets: Budgets) -> None:
        await budgets.set(scope, usd=usd, period=period)
        detail = {"usd": usd, "period": period}
        await audit.record(budgets.pool, audit.cli_actor(), "budget.set", f"budget:{scope}", detail)

    _with_budgets(database_url, go)
    console.print(f"{scope}: ${usd} {'per day' if daily else 'in total'}")


@budgets_group.command("remove")
@click.argument("scope")
@_daily
@_db_url
def budgets_remove(scope: str, daily: bool, database_url: str | None) -> None:
    """Remove the limit of SCOPE (what it spent stays on record)."""

    async def go(budgets: Budgets) -> bool:
        period = "daily" if daily else "total"
        removed = await budgets.remove(scope, period=period)
        if removed:
            target, detail = f"budget:{scope}", {"period": period}
            await audit.record(budgets.pool, audit.cli_actor(), "budget.removed", target, detail)
        return removed

    removed = _with_budgets(database_url, go)
    console.print(f"removed the limit of {scope}" if removed else f"{scope} had no such limit")


@budgets_group.command("show")
@click.argument("scope")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_db_url
def budgets_show(scope: str, as_json: bool, database_url: str | None) -> None:
    """The limit, spending and reservations of SCOPE (in total and today)."""

    async def go(budgets: Budgets) -> list[BudgetState]:
        return await budgets.get(scope)

    _print(_with_budgets(database_url, go), as_json)


@budgets_group.command("list")
@click.option("--kind", default=None, help="Only scopes of this kind (tenant, user, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_db_url
def budgets_list(kind: str | None, as_json: bool, database_url: str | None) -> None:
    """Every budget with a limit or with spending, in total and today."""

    async def go(budgets: Budgets) -> list[BudgetState]:
        return await budgets.list(kind=kind)

    _print(_with_budgets(database_url, go), as_json)


@budgets_group.command("recover")
@_db_url
def budgets_recover(database_url: str | None) -> None:
    """Settle now, at their worst case, the reservations of processes that died."""

    async def go(budgets: Budgets) -> int:
        return await budgets.recover()

    count = _with_budgets(database_url, go)
    console.print(f"settled {count} reservations of dead processes")
