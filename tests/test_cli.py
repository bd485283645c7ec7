"""The command line, in process through click's runner."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from click.testing import CliRunner

from threadline.cli import main

APP = "tests.engine.apps:engine"


@pytest.fixture
def cli(database_url: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(
            main, list(args), env={"DATABASE_URL": database_url}, catch_exceptions=False
        )
        return result.exit_code, result.output

    return invoke


def test_db_status_and_upgrade(cli) -> None:  # type: ignore[no-untyped-def]
    code, out = cli("db", "upgrade")
    assert code == 0 and "up to date" in out
    code, out = cli("db", "status")
    assert code == 0 and "0001" in out and "applied" in out


def test_start_wait_list_show_and_cancel(cli) -> None:  # type: ignore[no-untyped-def]
    code, out = cli(
        "start", "crashy", "--app", APP, "--input", "[1]", "--run-id", "cli-1", "--no-wait"
    )
    assert code == 0 and "cli-1" in out
    code, out = cli("start", "crashy", "--app", APP, "--input", "[1]", "--run-id", "cli-1")
    assert "already started" in out
    code, out = cli("runs", "list")
    assert code == 0 and "cli-1" in out and "pending" in out
    code, out = cli("runs", "cancel", "cli-1")
    assert code == 0 and "cancelled 1 run" in out
    code, out = cli("runs", "show", "cli-1")
    assert code == 0 and "cancelled" in out


def test_start_with_wait_prints_the_result(cli, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("THREADLINE_TEST_LOG", str(tmp_path / "log"))
    (tmp_path / "log.hung").write_text("x")  # make the crashy step finish at once
    code, out = cli("start", "crashy", "--app", APP, "--input", "[2]", "--wait")
    assert code == 0, out
    assert json.loads(out.splitlines()[-1]) == 31


def test_bad_input_gives_clear_errors(cli) -> None:  # type: ignore[no-untyped-def]
    code, out = cli("start", "nope", "--app", APP)
    assert code == 1 and "no workflow named 'nope'" in out
    code, out = cli("start", "crashy", "--app", APP, "--input", "{not json")
    assert code == 2 and "not JSON" in out
    code, out = cli("start", "crashy", "--app", "no_such_module:x")
    assert code == 2 and "cannot import" in out
    code, out = cli("runs", "show", "missing")
    assert code == 1 and "no run with id 'missing'" in out


def test_help_describes_every_command(cli) -> None:  # type: ignore[no-untyped-def]
    _, out = cli("--help")
    for command in ("db", "worker", "runs", "start", "demo"):
        assert command in out
    _code, out = cli("worker", "--help")
    assert "SIGTERM" in out


def test_costs_groups_the_ledger(cli, database_url: str) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    from decimal import Decimal

    from threadline import Engine
    from threadline.ledger import CallRecord, Ledger, Scope

    async def record() -> None:
        async with Engine(database_url, worker=False) as engine:
            ledger = Ledger(engine.pool)
            for tenant, cost in [("acme", "0.25"), ("acme", "0.50"), ("zeta", "0.125")]:
                await ledger.record(
                    CallRecord(
                        provider="openai",
                        requested_model="openai:gpt-4o-mini",
                        model="gpt-4o-mini",
                        status="ok",
                        latency_ms=12.0,
                        scope=Scope(tenant=tenant),
                        input_tokens=100,
                        output_tokens=10,
                        cost_usd=Decimal(cost),
                    )
                )

    asyncio.run(record())
    code, out = cli("costs", "--by", "tenant", "--since", "1d")
    assert code == 0 and "acme" in out and "0.750000" in out and "0.125000" in out
    code, out = cli("costs", "--by", "model", "--json")
    rows = json.loads(out)
    assert [(r["key"], r["calls"]) for r in rows] == [("openai:gpt-4o-mini", 3)]
    code, out = cli("costs", "--since", "last tuesday")
    assert code != 0 and "--since" in out


def test_show_prints_brackets_in_errors_as_written(cli, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """Rich markup would take `[anthropic]` in an install hint for a style and drop it."""
    cli("start", "crashy", "--app", APP, "--input", "[1]", "--run-id", "cli-br", "--no-wait")

    async def fail() -> None:
        conn = await asyncpg.connect(database_url)
        error = {"type": "ProviderNotInstalled", "message": "pip install 'threadline[anthropic]'"}
        await conn.execute(
            "UPDATE threadline.runs SET status = 'failed', error = $1::jsonb WHERE id = 'cli-br'",
            json.dumps(error),
        )
        await conn.close()

    asyncio.run(fail())
    code, out = cli("runs", "show", "cli-br")
    assert code == 0 and "pip install 'threadline[anthropic]'" in out
