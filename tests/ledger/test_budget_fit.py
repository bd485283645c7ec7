"""A call that does not fit its budget at `max_tokens` is made with fewer, down to a floor; the
strict input bound counts with the model's own tokenizer where threadline has one; and what a
call settles at never passes what it reserved."""

from __future__ import annotations

import random
import sys
import types
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest

from threadline import Engine
from threadline.ledger import BudgetExceeded, BudgetNotice, Ledger, Scope
from threadline.llm import (
    Message,
    ToolCall,
    ToolDef,
    estimate_messages,
    get_model,
    prices_per_token,
    upper_bound_messages,
)
from threadline.llm.pricing import PriceOverrides
from threadline.llm.tokens import _tokenizer, input_bound
from threadline.router import Models

from ..llm.servers.base import ProviderServer, Script

MINI = "openai:gpt-4o-mini"
DEMO = "demo:threadline-demo"
PROMPT = [Message.system("Be brief."), Message.user("Classify: coffee at the corner shop.")]
# The demo model priced like a premium model, as the support bot's budget met it.
PRICED = PriceOverrides({DEMO: {"input_per_mtok": 25, "output_per_mtok": 125}})
LOOKUP = ToolDef(
    "lookup_part",
    "Look up a part by its code.",
    {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
)


@pytest.fixture
def api(servers: dict[str, ProviderServer]) -> Script:
    servers["openai"].script.reset()
    return servers["openai"].script


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    async with Engine(database_url, worker=False) as engine:
        yield engine


@pytest.fixture
async def llm(engine: Engine, servers: dict[str, ProviderServer]) -> AsyncIterator[Models]:
    ledger = Ledger(engine.pool, overrides=PRICED)
    options = {"api_key": "k", "base_url": servers["openai"].url + "/v1"}
    llm = Models(ledger, model_options={"openai": options, "demo": {"tokens_per_second": 0}})
    yield llm
    await llm.aclose()
    await ledger.close()


def rates(spec: str) -> tuple[Decimal, Decimal]:
    provider, _, name = spec.partition(":")
    found = prices_per_token(provider, name, overrides=PRICED)
    assert found is not None
    return found


async def remaining(llm: Models, scope: str) -> Decimal:
    (state,) = [s for s in await llm.ledger.budgets.get(scope) if s.bucket == "total"]
    left = state.remaining_usd
    assert left is not None
    return left


async def test_max_tokens_is_lowered_to_what_the_budget_affords(llm: Models, api: Script) -> None:
    inputs, outputs = rates(MINI)
    fixed = upper_bound_messages(PROMPT) * inputs
    limit = fixed + 300 * outputs + outputs / 2  # 300 output tokens, and half of one more
    await llm.ledger.budgets.set("session:s1", usd=limit)
    # The provider counts the most it can: every byte a token, and every token it may write.
    api.reply(input_tokens=upper_bound_messages(PROMPT), output_tokens=300)
    await llm.request(MINI, PROMPT, scope=Scope(session="s1"), max_tokens=1024)
    assert api.last.body["max_completion_tokens"] == 300  # the request carries the lowered cap
    await llm.ledger.drain()
    (row,) = await llm.ledger.calls(session_id="s1")
    assert row["cost_usd"] <= row["reserved_usd"] <= limit  # settled ≤ reserved ≤ what was left
    assert await remaining(llm, "session:s1") == limit - row["cost_usd"] >= 0


async def test_below_the_floor_the_call_is_refused_unasked(llm: Models, api: Script) -> None:
    inputs, outputs = rates(MINI)
    fixed = upper_bound_messages(PROMPT) * inputs
    await llm.ledger.budgets.set("session:s2", usd=fixed + 200 * outputs)
    with pytest.raises(BudgetExceeded) as caught:  # 200 tokens < the default floor, 256
        await llm.request(MINI, PROMPT, scope=Scope(session="s2"), max_tokens=1024)
    assert caught.value.scope == "session:s2"
    assert caught.value.needed_usd == (fixed + 256 * outputs).quantize(Decimal("1e-10"))
    assert api.requests == []
    llm.min_output_tokens = 64  # a lower floor is a setting: then 200 tokens are worth a call
    await llm.request(MINI, PROMPT, scope=Scope(session="s2"), max_tokens=1024)
    assert api.last.body["max_completion_tokens"] == 200


def test_the_demo_models_bound_is_its_own_count() -> None:
    """The demo model counts input as `estimate_messages`: its strict bound is that count,
    not bytes (about 4x more, plus the fixed overheads for tools)."""
    messages = [Message.system("Answer from the context. " * 40), *PROMPT[1:]]
    model = get_model(DEMO, tokens_per_second=0)
    bound = input_bound("demo", model.name, messages, [LOOKUP])
    assert bound == estimate_messages(messages, [LOOKUP])
    assert bound * 3 < upper_bound_messages(messages, [LOOKUP])


async def test_a_priced_demo_call_settles_within_its_reservation(llm: Models) -> None:
    """The invariant strict mode promises: over prompts of every kind (tools, tool calls,
    non-ASCII text) and budgets that lower `max_tokens`, no call costs more than it reserved,
    and no counter spends past its limit."""
    rng = random.Random(7)
    words = ["filter", "Größe", "日本語", "🤖", "TL-4471", "warranty", "leak", "{'a': [1]}"]
    for n in range(30):
        session = f"demo{n}"
        await llm.ledger.budgets.set(f"session:{session}", usd=Decimal(rng.uniform(0.01, 0.2)))
        history: list[Message] = [Message.system(" ".join(rng.choices(words, k=60)))]
        if n % 3 == 0:
            call = ToolCall(f"c{n}", "lookup_part", {"code": "TL-4471"})
            history += [
                Message.user("Look up TL-4471"),
                Message.assistant("", tool_calls=[call]),
                Message.tool_result(call.id, {"name": "Sediment pre-filter"}, name=call.name),
            ]
        for _ in range(4):
            history.append(Message.user(" ".join(rng.choices(words, k=rng.randint(3, 40)))))
            try:
                answer = await llm.request(
                    DEMO,
                    history,
                    tools=[LOOKUP] if n % 2 else (),
                    scope=Scope(session=session),
                    max_tokens=rng.choice([64, 256, 512, 2048]),
                )
            except BudgetExceeded:
                break
            history.append(Message.assistant(answer.text))
    await llm.ledger.drain()
    rows = await llm.ledger.calls()
    assert 30 < len(rows) < 120  # some sessions ran out before their fourth call
    assert all(r["cost_usd"] <= r["reserved_usd"] for r in rows)
    for state in await llm.ledger.budgets.list(kind="session"):
        assert state.limit_usd is not None and state.spent_usd <= state.limit_usd


@pytest.fixture
def fake_tiktoken(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A stand-in for `tiktoken` (not installed here, and its encodings need a download):
    one token per word, for models it knows."""

    class Encoding:
        def encode(self, text: str, disallowed_special: object = ()) -> list[str]:
            return text.split()

    def encoding_for_model(model: str) -> Encoding:
        if not model.startswith("gpt-"):
            raise KeyError(model)
        return Encoding()

    module = types.ModuleType("tiktoken")
    module.encoding_for_model = encoding_for_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tiktoken", module)
    _tokenizer.cache_clear()
    yield
    _tokenizer.cache_clear()


def test_openai_models_count_with_tiktoken_when_it_is_there(fake_tiktoken: None) -> None:
    text = "one two three four five six"
    messages = [Message.user(text)]
    by_words = input_bound("openai", "gpt-4o-mini", messages)
    assert by_words == upper_bound_messages(messages, count=lambda t: len(t.split()))
    assert by_words < upper_bound_messages(messages)
    # A model tiktoken does not know (an OpenAI-compatible server's), and other providers:
    # bytes, which no tokenizer exceeds.
    assert input_bound("openai", "llama-3-70b", messages) == upper_bound_messages(messages)
    assert input_bound("anthropic", "claude-haiku-4-5", messages) == upper_bound_messages(messages)


def test_a_budget_update_says_the_share_spent_and_the_threshold_crossed() -> None:
    notice = BudgetNotice("session:s1", "total", Decimal("0.1"), Decimal("0.0708"), threshold=50)
    data = notice.to_json()
    assert (data["threshold"], data["percent"]) == (50, 70)  # 70 % used, past the 50 % mark
    assert BudgetNotice.from_json(data) == notice
    old = {k: v for k, v in data.items() if k != "threshold"} | {"percent": 50}
    assert BudgetNotice.from_json(old).threshold == 50  # recorded before `threshold` existed
