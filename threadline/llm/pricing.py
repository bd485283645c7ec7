"""What a call costs, from genai-prices (never a hand-kept price table).

- `price(provider, model, usage)` prices a finished call.
- `prices_per_token(provider, model)` gives the worst-case USD per input and output token,
  for budget reservations (the highest tier of a tiered price).
- Local models (`ollama`) and the demo model cost 0 unless overridden.
- `PriceOverrides` set prices for custom or self-hosted models, or correct a listed one:
  `{"ollama:llama3.2": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}}`, with optional
  `cache_read_per_mtok` / `cache_write_per_mtok`; a key `"provider:*"` covers every model
  of a provider. The JSON file named by `THREADLINE_PRICES` is read when no overrides are
  passed.
- A model genai-prices does not know is *unpriced*: `priced=False`, `total_usd=None`, and a
  warning is logged once per model. It is never silently $0.

Money is `Decimal`, in USD.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
from genai_prices.types import PriceCalculation, TieredPrices

from threadline.errors import ConfigurationError

from .events import Usage

__all__ = [
    "FREE_PROVIDERS",
    "ModelRates",
    "Price",
    "PriceOverrides",
    "price",
    "prices_per_token",
]

log = logging.getLogger(__name__)

FREE_PROVIDERS = frozenset({"ollama", "demo"})
PRICES_ENV = "THREADLINE_PRICES"
_MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)


@dataclass(frozen=True)
class Price:
    """The cost of one call. `source`: "genai-prices", "override", "free" or "unknown"."""

    total_usd: Decimal | None
    input_usd: Decimal | None
    output_usd: Decimal | None
    priced: bool
    source: str

    def to_json(self) -> dict[str, Any]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "total_usd": text(self.total_usd),
            "input_usd": text(self.input_usd),
            "output_usd": text(self.output_usd),
            "priced": self.priced,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Price:
        def money(value: Any) -> Decimal | None:
            return None if value is None else Decimal(str(value))

        return cls(
            total_usd=money(data.get("total_usd")),
            input_usd=money(data.get("input_usd")),
            output_usd=money(data.get("output_usd")),
            priced=bool(data["priced"]),
            source=str(data["source"]),
        )


@dataclass(frozen=True)
class ModelRates:
    """Prices in USD per million tokens; cache rates default to the input rate."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None

    @classmethod
    def from_json(cls, key: str, data: Mapping[str, Any]) -> ModelRates:
        def rate(name: str, required: bool) -> Decimal | None:
            value = data.get(name)
            if value is None:
                if required:
                    raise ConfigurationError(f"price override {key!r} needs {name!r}")
                return None
            try:
                result = Decimal(str(value))
            except ArithmeticError:
                raise ConfigurationError(
                    f"price override {key!r}: {name} must be a number, got {value!r}"
                ) from None
            if not result.is_finite() or result < 0:
                raise ConfigurationError(f"price override {key!r}: {name} must be >= 0")
            return result

        unknown = set(data) - {
            "input_per_mtok",
            "output_per_mtok",
            "cache_read_per_mtok",
            "cache_write_per_mtok",
        }
        if unknown:
            raise ConfigurationError(f"price override {key!r}: unknown fields {sorted(unknown)}")
        return cls(
            input_per_mtok=rate("input_per_mtok", True) or _ZERO,
            output_per_mtok=rate("output_per_mtok", True) or _ZERO,
            cache_read_per_mtok=rate("cache_read_per_mtok", False),
            cache_write_per_mtok=rate("cache_write_per_mtok", False),
        )

    def price(self, usage: Usage) -> Price:
        uncached = max(usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens, 0)
        read_rate = self.cache_read_per_mtok
        write_rate = self.cache_write_per_mtok
        input_usd = (
            uncached * self.input_per_mtok
            + usage.cache_read_tokens * (self.input_per_mtok if read_rate is None else read_rate)
            + usage.cache_write_tokens * (self.input_per_mtok if write_rate is None else write_rate)
        ) / _MILLION
        output_usd = usage.output_tokens * self.output_per_mtok / _MILLION
        return Price(input_usd + output_usd, input_usd, output_usd, True, "override")


class PriceOverrides(Mapping[str, ModelRates]):
    """Prices keyed by `"provider:model"` (or `"provider:*"`), taking precedence over
    genai-prices and over the free-local-model rule."""

    def __init__(self, entries: Mapping[str, ModelRates | Mapping[str, Any]] | None = None):
        self._rates: dict[str, ModelRates] = {}
        for key, value in (entries or {}).items():
            if ":" not in key:
                raise ConfigurationError(
                    f"price override key {key!r} must be 'provider:model' or 'provider:*'"
                )
            if isinstance(value, ModelRates):
                self._rates[key] = value
            elif isinstance(value, Mapping):
                self._rates[key] = ModelRates.from_json(key, value)
            else:
                raise ConfigurationError(f"price override {key!r} must be an object")

    @classmethod
    def from_file(cls, path: str | Path) -> PriceOverrides:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read price overrides from {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigurationError(f"price overrides in {path} must be a JSON object")
        return cls(data)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PriceOverrides:
        """Overrides from the file named by `THREADLINE_PRICES` (none when it is unset)."""
        path = (os.environ if environ is None else environ).get(PRICES_ENV)
        if not path:
            return cls()
        stamp = os.stat(path).st_mtime_ns if os.path.exists(path) else 0
        cached = _env_cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, cls.from_file(path))
            _env_cache[path] = cached
        return cached[1]

    def rates_for(self, provider: str, model: str) -> ModelRates | None:
        return self._rates.get(f"{provider}:{model}") or self._rates.get(f"{provider}:*")

    def __getitem__(self, key: str) -> ModelRates:
        return self._rates[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rates)

    def __len__(self) -> int:
        return len(self._rates)


_env_cache: dict[str, tuple[int, PriceOverrides]] = {}
_warned_unpriced: set[str] = set()


def _genai_usage(usage: Usage) -> genai_prices.Usage:
    return genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens or None,
        cache_write_tokens=usage.cache_write_tokens or None,
    )


def _warn_unpriced(provider: str, model: str, reason: object) -> None:
    key = f"{provider}:{model}"
    if key not in _warned_unpriced:
        _warned_unpriced.add(key)
        log.warning(
            "no price known for %s (%s); its calls are recorded as unpriced. "
            "Set a price with a %s override file.",
            key,
            reason,
            PRICES_ENV,
        )


def _calc(provider: str, model: str, usage: Usage) -> PriceCalculation:
    # Gemini model ids may carry the API's resource prefix ("models/gemini-2.5-flash").
    name = model.removeprefix("models/")
    return genai_prices.calc_price(_genai_usage(usage), name, provider_id=provider)


def genai_calculation(provider: str, model: str, usage: Usage) -> PriceCalculation | None:
    """genai-prices' calculation, or None when it does not know the model."""
    try:
        return _calc(provider, model, usage)
    except (LookupError, ValueError):
        return None


def price(
    provider: str, model: str, usage: Usage, *, overrides: PriceOverrides | None = None
) -> Price:
    """The cost of a call with this usage."""
    table = PriceOverrides.from_env() if overrides is None else overrides
    if rates := table.rates_for(provider, model):
        return rates.price(usage)
    if provider in FREE_PROVIDERS:
        return Price(_ZERO, _ZERO, _ZERO, True, "free")
    try:
        calc = _calc(provider, model, usage)
    except (LookupError, ValueError) as exc:
        _warn_unpriced(provider, model, exc)
        return Price(None, None, None, False, "unknown")
    return Price(calc.total_price, calc.input_price, calc.output_price, True, "genai-prices")


def _highest(value: Decimal | TieredPrices | None) -> Decimal | None:
    if isinstance(value, TieredPrices):
        return max([value.base, *(tier.price for tier in value.tiers)])
    return value


def prices_per_token(
    provider: str, model: str, *, overrides: PriceOverrides | None = None
) -> tuple[Decimal, Decimal] | None:
    """Worst-case (USD per input token, USD per output token), or None if unpriced.

    Tiered prices give their highest tier. Cache writes, which can cost more than plain
    input, are not counted: adapters never ask a provider to write its prompt cache.
    """
    table = PriceOverrides.from_env() if overrides is None else overrides
    if rates := table.rates_for(provider, model):
        return rates.input_per_mtok / _MILLION, rates.output_per_mtok / _MILLION
    if provider in FREE_PROVIDERS:
        return _ZERO, _ZERO
    calc = genai_calculation(provider, model, Usage())
    if calc is None:
        _warn_unpriced(provider, model, "not in genai-prices")
        return None
    input_rate = _highest(calc.model_price.input_mtok)
    output_rate = _highest(calc.model_price.output_mtok)
    if input_rate is None or output_rate is None:
        _warn_unpriced(provider, model, "no token prices in genai-prices")
        return None
    return input_rate / _MILLION, output_rate / _MILLION
