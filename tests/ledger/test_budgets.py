"""Budgets on a real PostgreSQL: limits, reservations over every scope at once, settlement with
the ledger row, warnings, recovery of a dead holder's reservations, the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from click.testing import CliRunner

from threadline import ConfigurationError, Engine
from threadline.cli import main
from threadline.ledger import (
    BudgetNotice,
    Budgets,
    CallBudget,
    CallRecord,
    Grant,
    Ledger,
    Refusal,
    Scope,
)
from threadline.ledger.limits import Budget, BudgetExceeded, Counter, counters_for
from threadline.ledger.outcomes import CallInfo
from threadline.llm.pricing import PriceOverrides

D = Decimal
CALL = CallInfo(
    "anthropic", "claude-haiku-4-5", "anthropic:claude-haiku-4-5", {"tenant": "acme"}, 100
)


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    async with Engine(database_url, worker=False) as engine:
        ledger = Ledger(engine.pool, overrides=PriceOverrides({}), lease=0.3)
        yield ledger
        await ledger.close()


def counters(**scope: str) -> list[Counter]:
    return counters_for(Scope(**scope))


async def reserve(budgets: Budgets, found: list[Counter], usd: str, **kw: int) -> Grant | Refusal:
    """A call whose input costs `usd` and each output token a millionth of a dollar."""
    return await budgets.reserve(
        found,
        fixed_usd=D(usd),
        per_token_usd=D("0.000001"),
        max_tokens=kw.get("max_tokens", 1000),
        min_tokens=kw.get("min_tokens", 100),
        call=CALL,
    )


async def usage(ledger: Ledger, scope: str) -> tuple[Decimal, Decimal]:
    (state,) = [s for s in await ledger.budgets.get(scope) if s.bucket == "total"]
    return state.spent_usd, state.reserved_usd


async def test_limits_are_set_changed_listed_and_removed(ledger: Ledger) -> None:
    budgets = ledger.budgets
    await budgets.set("tenant:acme", usd=10)
    await budgets.set("tenant:acme", usd="12.5")
    await budgets.set("user:*", usd=1, period="daily")
    await budgets.set("global", usd=50, period="daily")
    listed = {(s.scope, s.period): s.limit_usd for s in await budgets.list()}
    assert listed == {
        ("global", "daily"): D("50"),
        ("tenant:acme", "total"): D("12.5"),
        ("user:*", "daily"): D("1"),
    }
    assert [s.scope for s in await budgets.list(kind="user")] == ["user:*"]
    assert await budgets.remove("tenant:acme") and not await budgets.remove("tenant:acme")
    assert [s.scope for s in await budgets.get("tenant:acme")] == []
    for bad in ("planet:earth", "tenant", "global:x"):
        with pytest.raises(ConfigurationError):
            await budgets.set(bad, usd=1)
    with pytest.raises(ConfigurationError):
        await budgets.set("tenant:acme", usd=-1)


async def test_a_reservation_takes_every_scope_or_none(ledger: Ledger) -> None:
    budgets = ledger.budgets
    await budgets.set("tenant:acme", usd="1.00")
    await budgets.set("user:ann", usd="0.10")
    found = counters(tenant="acme", user="ann")
    grant = await reserve(budgets, found, "0.05")
    assert isinstance(grant, Grant) and grant.max_tokens == 1000
    assert grant.amount_usd == D("0.051")
    refusal = await reserve(budgets, found, "0.05")  # the user's budget has $0.049 left
    assert isinstance(refusal, Refusal)
    assert (refusal.scope, refusal.limit_usd, refusal.reserved_usd) == (
        "user:ann",
        D("0.1"),
        grant.amount_usd,
    )
    assert refusal.needed_usd == D("0.0501")
    assert await usage(ledger, "tenant:acme") == (0, D("0.051"))  # untouched by the refusal
    # A scope without a limit of its own reserves nothing; one under the '*' limit does.
    await budgets.set("user:*", usd="0.02")
    assert isinstance(await reserve(budgets, counters(tenant="acme", user="bob"), "0.05"), Refusal)


async def test_max_tokens_is_lowered_to_what_the_tightest_budget_affords(ledger: Ledger) -> None:
    await ledger.budgets.set("session:s1", usd="0.0105")
    grant = await reserve(ledger.budgets, counters(session="s1"), "0.01", max_tokens=4000)
    assert isinstance(grant, Grant)
    assert (grant.max_tokens, grant.amount_usd) == (500, D("0.0105"))
    refusal = await reserve(ledger.budgets, counters(session="s1"), "0", min_tokens=1)
    assert isinstance(refusal, Refusal) and refusal.waiting_helps  # all of it is reserved


async def test_declared_limits_apply_and_a_limit_set_at_run_time_replaces_them(
    ledger: Ledger,
) -> None:
    scope = Scope(run_id="r1", step_no=2, tenant="acme")
    declared = Budget(per_step="0.02", per_tenant=5).counters(
        scope, whole=None, daily_of=None, day="x"
    )
    found = counters_for(scope, declared=declared)
    assert isinstance(await reserve(ledger.budgets, found, "0.03"), Refusal)
    await ledger.budgets.set("step:r1:2", usd="0.5")
    assert isinstance(await reserve(ledger.budgets, found, "0.03"), Grant)
    with pytest.raises(ConfigurationError):
        Budget(daily=1).counters(scope, whole=None, daily_of=None, day="x")
    # An agent's budget: `usd` per session, `daily` for all its sessions.
    bound = Budget(usd="0.5", daily=20).bind(whole="session:s1", daily_of="agent:support")
    plan = CallBudget.of(Scope(session="s1", agent="support"), bound)
    limited = {(c.kind, c.key, c.period, c.declared_usd) for c in plan.counters if c.declared_usd}
    assert limited == {("session", "s1", "total", D("0.5")), ("agent", "support", "daily", D(20))}
    assert plan.call_cap_usd is None
    assert CallBudget.of(Scope(), Budget(usd="0.1")).call_cap_usd == D("0.1")


async def test_settlement_charges_the_actual_cost_once_with_the_ledger_row(
    ledger: Ledger,
) -> None:
    await ledger.budgets.set("tenant:acme", usd="1")
    grant = await reserve(ledger.budgets, counters(tenant="acme"), "0.2")
    assert isinstance(grant, Grant) and grant.reservation_id is not None
    row = CallRecord(
        "anthropic",
        "anthropic:claude-haiku-4-5",
        "claude-haiku-4-5",
        "ok",
        5.0,
        scope=Scope(tenant="acme"),
        cost_usd=D("0.15"),
        reservation_id=grant.reservation_id,
        reserved_usd=grant.amount_usd,
    )
    await ledger.record(row)
    assert await usage(ledger, "tenant:acme") == (D("0.15"), 0)
    await ledger.record(row)  # the same reservation again: neither charged nor recorded twice
    assert await usage(ledger, "tenant:acme") == (D("0.15"), 0)
    (recorded,) = await ledger.calls(tenant="acme")
    assert (recorded["reservation_id"], recorded["reserved_usd"]) == (
        grant.reservation_id,
        grant.amount_usd,
    )


async def test_warnings_at_50_80_and_100_percent_come_once_each(ledger: Ledger) -> None:
    heard: list[BudgetNotice] = []
    ledger.budgets.on_notice(heard.append)
    await ledger.budgets.set("user:ann", usd="1")

    async def spend(reserve_usd: str, cost: str) -> tuple[int | None, ...]:
        grant = await reserve(
            ledger.budgets, counters(user="ann"), reserve_usd, max_tokens=0, min_tokens=0
        )
        assert isinstance(grant, Grant)
        found: list[BudgetNotice] = []
        row = CallRecord(
            "openai",
            "openai:x",
            "x",
            "ok",
            1.0,
            scope=Scope(user="ann"),
            cost_usd=D(cost),
            reservation_id=grant.reservation_id,
        )
        await ledger.submit(row, found.extend)
        return tuple(n.threshold for n in found)

    assert await spend("0.6", "0.55") == (50,)
    assert await spend("0.1", "0.1") == ()
    assert await spend("0.2", "0.2") == (80,)
    assert await spend("0.15", "0.15") == (100,)
    assert [n.threshold for n in heard] == [50, 80, 100]
    assert heard[-1].to_json() == {
        "scope": "user:ann",
        "period": "total",
        "bucket": "total",
        "limit_usd": "1.0000000000",
        "spent_usd": "1.0000000000",
        "threshold": 100,
        "percent": 100,
    }
    await ledger.budgets.set("user:ann", usd="2")  # raised: 50 % is behind, 80 % ahead again
    assert await spend("0.7", "0.7") == (80,)


async def test_a_dead_holders_reservation_is_settled_at_its_worst_case_once(
    ledger: Ledger, database_url: str
) -> None:
    await ledger.budgets.set("tenant:acme", usd="1")
    grant = await reserve(ledger.budgets, counters(tenant="acme"), "0.2")
    assert isinstance(grant, Grant)
    # The holder stops heartbeating (as if its process froze), and another one recovers.
    task = ledger.budgets._loop_task
    assert task is not None
    task.cancel()
    await asyncio.sleep(0.5)
    async with Engine(database_url, worker=False) as other:
        assert await Budgets(other.pool).recover() == 1
        assert await Budgets(other.pool).recover() == 0
    assert await usage(ledger, "tenant:acme") == (grant.amount_usd, 0)
    (row,) = await ledger.calls(tenant="acme")
    assert (row["status"], row["error_code"], row["cost_usd"]) == (
        "error",
        "interrupted",
        grant.amount_usd,
    )
    assert row["estimated"] and row["model"] == "claude-haiku-4-5"
    # The frozen process wakes up and settles: its row is dropped, nothing is charged twice.
    late = CallRecord(
        "anthropic",
        "anthropic:claude-haiku-4-5",
        "claude-haiku-4-5",
        "ok",
        1.0,
        scope=Scope(tenant="acme"),
        cost_usd=D("0.1"),
        reservation_id=grant.reservation_id,
    )
    await ledger.record(late)
    assert await usage(ledger, "tenant:acme") == (grant.amount_usd, 0)
    assert len(await ledger.calls(tenant="acme")) == 1


def test_budget_exceeded_survives_a_journal_round_trip() -> None:
    error = BudgetExceeded(
        'user:ann "the" (1)',
        D("0.5"),
        D("0.49"),
        D("0.03"),
        reserved_usd=D("0.005"),
        bucket="2026-01-02",
        model="anthropic:claude-haiku-4-5",
    )
    assert str(error) == (
        'budget exceeded: user:"ann \\"the\\" (1)" (2026-01-02): limit $0.5, spent $0.49, '
        "reserved $0.005, needs $0.03 for anthropic:claude-haiku-4-5"
    )
    again = BudgetExceeded.from_message(str(error))
    assert again is not None and again.to_json() == error.to_json()
    assert BudgetExceeded.from_message("something else") is None


def test_the_cli_sets_shows_lists_and_removes_budgets(database_url: str) -> None:
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(main, ["budgets", *args], env={"DATABASE_URL": database_url})
        assert result.exit_code == 0, result.output
        return result.output

    assert "tenant:acme: $10 in total" in cli("set", "tenant:acme", "10")
    cli("set", "user:*", "0.5", "--daily")
    (shown,) = json.loads(cli("show", "tenant:acme", "--json"))
    assert (shown["scope"], shown["limit_usd"], shown["spent_usd"]) == ("tenant:acme", "10", "0")
    assert {r["scope"] for r in json.loads(cli("list", "--json"))} == {"tenant:acme", "user:*"}
    assert "user:*" in cli("list", "--kind", "user")
    assert "removed" in cli("remove", "tenant:acme")
    assert "settled 0" in cli("recover")
    result = runner.invoke(
        main, ["budgets", "set", "tenant:acme", "lots"], env={"DATABASE_URL": database_url}
    )
    assert result.exit_code == 1 and "must be a number" in result.output
