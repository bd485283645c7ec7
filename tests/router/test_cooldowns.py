"""A failing model cools down for every router on the database, then one probe brings it back."""

from __future__ import annotations

import asyncio

import pytest

from threadline import Engine
from threadline.engine.mirror import mirror_for
from threadline.llm import Message, RateLimited
from threadline.router import CooldownPolicy, Fallback, ModelPolicy
from threadline.router.cooldowns import CHANNEL, MODELS, Cooldowns

from ..helpers import until
from ..llm.servers.base import Script
from .conftest import MakeRouter, models_asked

pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated")

SONNET, MINI = "anthropic:claude-sonnet-4-5", "openai:gpt-4o-mini"
POLICY = ModelPolicy(SONNET, fallback=[MINI])
PROMPT = [Message.user("What is the answer?")]


async def test_a_rate_limited_model_cools_down_everywhere_then_recovers(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    one, other = make_router(), make_router()  # two processes' routers, one database
    await one.request(ModelPolicy(MINI, fallback=[SONNET]), PROMPT)  # SDKs loaded: timing holds
    scripts["anthropic"].reply(error="rate_limited", retry_after="2")
    first = await one.request(POLICY, PROMPT)
    assert first.fallbacks == (Fallback(SONNET, MINI, "rate_limited"),)
    for router in (one, other):  # cooling down: not asked again, by either
        answer = await router.request(POLICY, PROMPT)
        assert answer.fallbacks == (Fallback(SONNET, MINI, "cooldown"),)
    assert len(scripts["anthropic"].requests) == 1
    await asyncio.sleep(2.05)
    back = await other.request(POLICY, PROMPT)  # half-open: this call probes it, and it answers
    assert (back.used_model, back.fallbacks) == (SONNET, ())
    assert await one.cooldowns().list() == []  # closed again
    assert models_asked(scripts["anthropic"]) == ["claude-sonnet-4-5"] * 2
    assert len(scripts["openai"].requests) == 4


async def test_one_probe_at_a_time_and_a_failed_probe_cools_it_down_for_longer(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    router = make_router(cooldowns=CooldownPolicy(base_s=1.0))
    await router.request(ModelPolicy(MINI, fallback=[SONNET]), PROMPT)  # SDKs loaded
    scripts["anthropic"].reply(error="server_error")
    await router.request(POLICY, PROMPT)
    (health,) = await router.cooldowns().list()
    assert (health.failures, health.state) == (1, "open")
    await asyncio.sleep(1.05)
    (health,) = await router.cooldowns().list()
    assert health.state == "half_open"
    scripts["anthropic"].reply(error="server_error", delay=0.3)
    answers = await asyncio.gather(*(router.request(POLICY, PROMPT) for _ in range(3)))
    reasons = sorted(a.fallbacks[0].reason for a in answers)
    assert reasons == ["cooldown", "cooldown", "server_error"]  # only the probe asked Sonnet
    assert len(scripts["anthropic"].requests) == 2
    (health,) = await router.cooldowns().list()
    left = (health.until - health.until.now(health.until.tzinfo)).total_seconds()
    assert (health.failures, health.state) == (2, "open") and 1.5 < left <= 2  # 1 s, doubled


async def test_healthy_models_are_routed_without_asking_the_database_until_one_cools_down(
    make_router: MakeRouter,
    scripts: dict[str, Script],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = make_router()
    cooldowns = router.cooldowns()
    mirror = mirror_for(cooldowns.pool, CHANNEL, MODELS, lambda row: str(row[0]))
    assert mirror is not None
    await cooldowns.health([SONNET])  # first use: asks, and loads the set in the background
    await until(lambda: mirror.keys() is not None)

    def no_database() -> None:
        raise AssertionError("asked the database")

    with monkeypatch.context() as patched:
        # No other task runs meanwhile: the answer needs no await that suspends.
        patched.setattr(type(cooldowns.pool), "acquire", no_database)
        assert await cooldowns.health([SONNET, MINI]) == {}
    # Another process opens Sonnet's circuit: the notification reaches this one, and its
    # router skips Sonnet from then on.
    async with Engine(database_url, worker=False) as elsewhere:
        await Cooldowns(elsewhere.pool).failed(SONNET, RateLimited("slow down", retry_after=30))
    await until(lambda: mirror.keys() == {SONNET})
    answer = await router.request(POLICY, PROMPT)
    assert answer.fallbacks == (Fallback(SONNET, MINI, "cooldown"),)
    assert scripts["anthropic"].requests == []
    await cooldowns.clear()
    await until(lambda: mirror.keys() == set())
    assert (await router.request(POLICY, PROMPT)).used_model == SONNET
