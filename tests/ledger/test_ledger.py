"""Every call priced and recorded: each provider's official SDK against its test server,
through `LLM`, into the ledger on a real PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import genai_prices
import pytest

from threadline import Engine
from threadline.ledger import Ledger, Scope
from threadline.ledger.record import CallRecord
from threadline.llm import (
    Message,
    RateLimited,
    StreamInterrupted,
    TextDelta,
    estimate_tokens,
    get_model,
)
from threadline.llm.pricing import PriceOverrides
from threadline.router import Models

from .conftest import ProviderCase

MESSAGES = [Message.system("Be brief."), Message.user("What is the answer?")]


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    async with Engine(database_url, worker=False) as engine:
        yield Ledger(engine.pool, overrides=PriceOverrides({}))


def genai_cost(provider: str, model: str, usage: dict[str, int]) -> Decimal | None:
    if provider in ("ollama", "demo"):
        return Decimal(0)
    calc = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            cache_read_tokens=usage["cache_read_tokens"] or None,
            cache_write_tokens=usage["cache_write_tokens"] or None,
        ),
        model,
        provider_id=provider,
    )
    return calc.total_price


async def test_plain_and_streamed_calls_are_recorded_with_usage_and_price(
    provider: ProviderCase, ledger: Ledger
) -> None:
    llm = Models(ledger)
    model = provider.model()
    scope = Scope(tenant="acme", user="u1", session="s1", turn="t1", agent="support")
    provider.script.reply(text="The answer is forty-two.", input_tokens=120, output_tokens=9)
    provider.script.reply(text="The answer is forty-two.", input_tokens=120, output_tokens=9)
    plain = await llm.request(model, MESSAGES, scope=scope)
    pieces: list[str] = []
    streamed = await llm.request(
        model,
        MESSAGES,
        scope=scope,
        on_delta=lambda e: pieces.append(e.text) if isinstance(e, TextDelta) else None,
    )
    assert plain.text == streamed.text == "".join(pieces) == "The answer is forty-two."
    rows = await ledger.calls(session_id="s1")
    assert len(rows) == 2
    for row, response in zip(rows, (plain, streamed), strict=True):
        assert row["status"] == "ok" and not row["estimated"] and row["priced"]
        assert (row["tenant"], row["user_id"], row["turn_id"], row["agent"]) == (
            "acme",
            "u1",
            "t1",
            "support",
        )
        assert row["provider"] == provider.provider
        assert row["input_tokens"] == 120 and row["output_tokens"] == 9
        expected = genai_cost(provider.provider, row["model"], response.usage.to_json())
        assert row["cost_usd"] == pytest.approx(expected, abs=Decimal("1e-10"))
        assert row["latency_ms"] > 0
    assert rows[1]["ttft_ms"] is not None and rows[1]["ttft_ms"] <= rows[1]["latency_ms"]
    if provider.provider != "ollama":
        assert rows[0]["cost_usd"] > 0


async def test_a_failed_call_is_recorded_with_its_error(
    provider: ProviderCase, ledger: Ledger
) -> None:
    llm = Models(ledger)
    provider.script.reply(error="rate_limited", retry_after="3")
    with pytest.raises(RateLimited):
        await llm.request(provider.model(), MESSAGES, scope=Scope(session="s2"))
    (row,) = await ledger.calls(session_id="s2")
    assert row["status"] == "error" and row["error_code"] == "rate_limited"
    assert row["cost_usd"] == 0 and row["output_tokens"] == 0 and not row["estimated"]


async def test_a_cut_stream_is_charged_from_an_estimate(
    provider: ProviderCase, ledger: Ledger
) -> None:
    llm = Models(ledger)
    reply = provider.script.reply(
        text="one two three four five six seven eight nine ten",
        chunks=5,
        error="cut_stream",
        break_after=2,
    )
    with pytest.raises(StreamInterrupted) as caught:
        await llm.request(
            provider.model(), MESSAGES, scope=Scope(session="s3"), on_delta=lambda e: None
        )
    assert caught.value.partial_text == reply.partial_text()
    (row,) = await ledger.calls(session_id="s3")
    assert row["status"] == "error" and row["estimated"]
    assert row["output_tokens"] == estimate_tokens(reply.partial_text())
    assert row["input_tokens"] > 0
    if provider.provider != "ollama":
        assert row["cost_usd"] > 0  # the provider bills what it streamed: so do we


async def test_stream_records_a_consumer_that_stops_early_as_cancelled(ledger: Ledger) -> None:
    llm = Models(ledger)
    model = get_model("demo:threadline-demo", tokens_per_second=0)
    stream = llm.stream(model, MESSAGES, scope=Scope(session="s4"))
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()  # type: ignore[attr-defined]
    (row,) = await ledger.calls(session_id="s4")
    assert row["status"] == "cancelled" and row["estimated"]
    assert row["output_tokens"] >= 1


async def test_an_unpriced_model_is_recorded_as_unpriced_never_as_free(
    ledger: Ledger, caplog: pytest.LogCaptureFixture, provider: ProviderCase
) -> None:
    """A model the price data lacks has an unknown cost, not $0; a local (Ollama) model is
    free unless a price override says otherwise."""
    llm = Models(ledger)
    model = provider.model()
    model.name = "made-up-model-9000"
    provider.script.reply(model="made-up-model-9000")
    with caplog.at_level(logging.WARNING):
        await llm.request(model, MESSAGES, scope=Scope(session="s5"))
    (row,) = await ledger.calls(session_id="s5")
    (report,) = await ledger.report("model")
    if provider.provider == "ollama":
        assert row["priced"] is True and row["cost_usd"] == 0
        assert report.unpriced_calls == 0
        return
    assert row["priced"] is False and row["cost_usd"] is None
    assert "made-up-model-9000" in caplog.text
    assert report.unpriced_calls == 1


async def test_price_overrides_price_a_self_hosted_model(ledger: Ledger) -> None:
    ledger.overrides = PriceOverrides(
        {"demo:threadline-demo": {"input_per_mtok": 1, "output_per_mtok": 2}}
    )
    llm = Models(ledger)
    response = await llm.request(
        get_model("demo:threadline-demo", tokens_per_second=0),
        MESSAGES,
        scope=Scope(session="s6"),
    )
    (row,) = await ledger.calls(session_id="s6")
    usage = response.usage
    expected = (Decimal(usage.input_tokens) * 1 + Decimal(usage.output_tokens) * 2) / 1_000_000
    assert row["cost_usd"] == expected > 0


async def test_reports_group_costs(ledger: Ledger) -> None:
    llm = Models(ledger)
    model = get_model("demo:threadline-demo", tokens_per_second=0)
    ledger.overrides = PriceOverrides(
        {"demo:threadline-demo": {"input_per_mtok": 1000, "output_per_mtok": 1000}}
    )
    for tenant, session in [("a", "s1"), ("a", "s2"), ("b", "s3")]:
        await llm.request(model, MESSAGES, scope=Scope(tenant=tenant, session=session))
    by_tenant = {r.key: r for r in await ledger.report("tenant")}
    assert set(by_tenant) == {"a", "b"}
    assert by_tenant["a"].calls == 2 and by_tenant["b"].calls == 1
    assert by_tenant["a"].cost_usd == pytest.approx(2 * by_tenant["b"].cost_usd)
    (day,) = await ledger.report("day")
    assert day.calls == 3
    assert [r.calls for r in await ledger.report("model", tenant="b")] == [1]


async def test_rows_with_a_step_record_keep_the_money_when_the_record_is_fenced_off(
    ledger: Ledger,
) -> None:
    async with ledger.pool.acquire() as conn:
        for run_id, owner in (("mine", 7), ("taken", 8)):
            await conn.execute(
                "INSERT INTO threadline.runs (id, workflow, app_version, status, input, owner) "
                "VALUES ($1, 'wf', 'v', 'running', '{}', $2)",
                run_id,
                owner,
            )

    def row(run_id: str) -> CallRecord:
        scope = Scope(run_id=run_id, step_no=1)
        return CallRecord("demo", "demo:m", "m", "ok", 1.0, scope, cost_usd=Decimal("0.01"))

    # Alone (one statement), then two at once (one transaction): a record is kept only for a
    # run its writer still owns; the rows are kept either way.
    assert await ledger.submit_with_steps([row("mine")], [("mine", 1, "route", "{}", None, 7)])
    both = [
        ledger.submit_with_steps([row("mine")], [("mine", 2, "route", "{}", None, 7)]),
        ledger.submit_with_steps([row("taken")], [("taken", 1, "route", "{}", None, 7)]),
    ]
    assert [await f for f in both] == [True, False]
    async with ledger.pool.acquire() as conn:
        steps = await conn.fetch("SELECT run_id, step_no FROM threadline.steps ORDER BY 1, 2")
        calls = await conn.fetchval("SELECT count(*) FROM threadline.llm_calls")
    assert [tuple(s) for s in steps] == [("mine", 1), ("mine", 2)]
    assert calls == 3
