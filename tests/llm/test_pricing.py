"""Prices from genai-prices, free local models, overrides, and unknown models left unpriced."""

from __future__ import annotations

import json
import logging
import os
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest

from threadline.errors import ConfigurationError
from threadline.llm import ModelRates, Price, PriceOverrides, Usage, price, prices_per_token
from threadline.llm.context_windows import context_window

USAGE = Usage(input_tokens=250_000, output_tokens=1_000, cache_read_tokens=50_000)


@pytest.fixture(autouse=True)
def _no_price_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THREADLINE_PRICES", raising=False)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5"),
        ("openai", "gpt-4o-mini"),
        ("google", "gemini-2.5-flash"),
    ],
)
def test_hosted_models_cost_what_genai_prices_says(provider: str, model: str) -> None:
    result = price(provider, model, USAGE)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=250_000, output_tokens=1_000, cache_read_tokens=50_000),
        model,
        provider_id=provider,
    )
    assert result == Price(
        expected.total_price, expected.input_price, expected.output_price, True, "genai-prices"
    )
    assert isinstance(result.total_usd, Decimal) and result.total_usd > 0


def test_local_and_demo_models_are_free() -> None:
    for provider in ("ollama", "demo"):
        result = price(provider, "anything", USAGE)
        assert result == Price(Decimal(0), Decimal(0), Decimal(0), True, "free")
        assert prices_per_token(provider, "anything") == (Decimal(0), Decimal(0))


def test_overrides_price_custom_models_and_beat_genai_prices() -> None:
    overrides = PriceOverrides(
        {
            "ollama:llama3.2": {"input_per_mtok": 0.1, "output_per_mtok": 0.2},
            "openai:*": {"input_per_mtok": "1", "output_per_mtok": "2", "cache_read_per_mtok": 0.5},
        }
    )
    local = price("ollama", "llama3.2", USAGE, overrides=overrides)
    assert local.source == "override"
    assert local.input_usd == Decimal("0.025")  # 250k tokens at $0.1/M
    assert local.output_usd == Decimal("0.0002")
    assert local.total_usd == Decimal("0.0252")
    hosted = price("openai", "gpt-4o-mini", USAGE, overrides=overrides)
    assert hosted.input_usd == Decimal("0.225")  # 200k at $1/M + 50k cached at $0.5/M
    assert hosted.output_usd == Decimal("0.002")
    assert price("ollama", "qwen", USAGE, overrides=overrides).source == "free"
    assert prices_per_token("ollama", "llama3.2", overrides=overrides) == (
        Decimal("0.0000001"),
        Decimal("0.0000002"),
    )
    assert isinstance(overrides["ollama:llama3.2"], ModelRates) and len(overrides) == 2


def test_overrides_load_from_the_threadline_prices_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"ollama:llama3.2": {"input_per_mtok": 1, "output_per_mtok": 1}}))
    monkeypatch.setenv("THREADLINE_PRICES", str(path))
    assert price("ollama", "llama3.2", Usage(1_000_000, 0)).total_usd == Decimal(1)

    path.write_text(json.dumps({"ollama:llama3.2": {"input_per_mtok": 3, "output_per_mtok": 1}}))
    os.utime(path, ns=(1, 10**18))  # a new mtime, as an edit later in time would give
    assert price("ollama", "llama3.2", Usage(1_000_000, 0)).total_usd == Decimal(3)

    path.write_text("{not json")
    os.utime(path, ns=(1, 2 * 10**18))
    with pytest.raises(ConfigurationError, match=r"prices\.json"):
        price("ollama", "llama3.2", USAGE)


@pytest.mark.parametrize(
    "entries",
    [
        {"llama3.2": {"input_per_mtok": 1, "output_per_mtok": 1}},
        {"ollama:x": {"input_per_mtok": 1}},
        {"ollama:x": {"input_per_mtok": -1, "output_per_mtok": 1}},
        {"ollama:x": {"input_per_mtok": "cheap", "output_per_mtok": 1}},
        {"ollama:x": {"input_per_mtok": 1, "output_per_mtok": 1, "per_request": 2}},
    ],
)
def test_bad_overrides_are_configuration_errors(entries: dict[str, dict[str, object]]) -> None:
    with pytest.raises(ConfigurationError):
        PriceOverrides(entries)


def test_unknown_model_is_unpriced_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="threadline.llm.pricing")
    first = price("openai", "gpt-unknown-test-model-1", USAGE)
    second = price("openai", "gpt-unknown-test-model-1", USAGE)
    assert first == second == Price(None, None, None, False, "unknown")
    warnings = [r for r in caplog.records if "gpt-unknown-test-model-1" in r.getMessage()]
    assert len(warnings) == 1
    assert "THREADLINE_PRICES" in warnings[0].getMessage()
    assert prices_per_token("openai", "gpt-unknown-test-model-1") is None


def test_prices_per_token_take_the_highest_tier() -> None:
    rates = prices_per_token("openai", "gpt-4o-mini")
    assert rates == (Decimal("0.15") / 10**6, Decimal("0.6") / 10**6)

    sonnet = prices_per_token("anthropic", "claude-sonnet-4-5")
    assert sonnet is not None
    calc = genai_prices.calc_price(
        genai_prices.Usage(), "claude-sonnet-4-5", provider_id="anthropic"
    )
    tiered_input = calc.model_price.input_mtok
    assert isinstance(tiered_input, genai_prices.types.TieredPrices)
    highest = max(t.price for t in tiered_input.tiers)
    assert highest > tiered_input.base
    assert sonnet[0] == highest / 10**6
    # The worst case bounds the real price of a long prompt.
    long_prompt = Usage(input_tokens=300_000, output_tokens=4_000)
    actual = price("anthropic", "claude-sonnet-4-5", long_prompt).total_usd
    assert actual is not None
    assert actual <= 300_000 * sonnet[0] + 4_000 * sonnet[1]


def test_price_round_trips_through_json() -> None:
    for value in (price("openai", "gpt-4o-mini", USAGE), Price(None, None, None, False, "unknown")):
        assert Price.from_json(json.loads(json.dumps(value.to_json()))) == value


def test_context_windows() -> None:
    assert context_window("anthropic", "claude-sonnet-4-5") == 200_000
    assert context_window("google", "gemini-2.5-flash") == 1_048_576
    assert context_window("openai", "gpt-4o-mini") == 128_000
    assert context_window("openai", "gpt-4o-my-finetune-xyz") == 128_000
    assert context_window("ollama", "llama3.2") == 4_096
    assert context_window("openai", "totally-unknown") == 8_192


def test_gemini_resource_prefix_is_ignored() -> None:
    assert price("google", "models/gemini-2.5-flash", USAGE) == price(
        "google", "gemini-2.5-flash", USAGE
    )
