"""Fallback on each kind of provider failure, the restart event after a stream broke mid-way,
and errors that are not worth another model."""

from __future__ import annotations

import time
from typing import Any

import pytest

from threadline.ledger import Scope
from threadline.llm import (
    InvalidRequest,
    Message,
    RateLimited,
    StreamEvent,
    TextDelta,
    get_model,
)
from threadline.router import Fallback, ModelPolicy, NoModelAvailable, Restart

from ..llm.servers.base import Script
from .conftest import MakeRouter, models_asked

pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated")

SONNET, MINI = "anthropic:claude-sonnet-4-5", "openai:gpt-4o-mini"
POLICY = ModelPolicy(SONNET, fallback=[MINI])
PROMPT = [Message.user("What is the answer?")]

# scripted failure of the first model -> the reason the router gives for leaving it
FAILURES = [
    ({"error": "rate_limited", "retry_after": "7"}, "rate_limited"),
    ({"error": "overloaded"}, "overloaded"),
    ({"error": "unavailable"}, "overloaded"),
    ({"error": "server_error"}, "server_error"),
    ({"delay": 2.0}, "timeout"),
    ({"error": "cut_stream", "break_after": 0}, "stream_interrupted"),
]


@pytest.mark.parametrize(
    ("failure", "reason"),
    FAILURES,
    ids=["rate_limited", "overloaded", "unavailable", "server_error", "timeout", "cut_stream"],
)
async def test_a_failing_model_falls_back_and_cools_down(
    make_router: MakeRouter, scripts: dict[str, Script], failure: dict[str, Any], reason: str
) -> None:
    router = make_router(model_options={"timeout": 0.5})
    scripts["anthropic"].reply(**failure)
    scripts["openai"].reply(text="From the fallback.")
    seen: list[StreamEvent | Restart] = []
    answer = await router.request(POLICY, PROMPT, scope=Scope(session="s"), on_delta=seen.append)
    assert (answer.text, answer.used_model, answer.attempts) == ("From the fallback.", MINI, 2)
    assert answer.fallbacks == (Fallback(SONNET, MINI, reason),)
    assert not any(isinstance(e, Restart) for e in seen)  # nothing had been said: silent
    first, second = await router.ledger.calls(session_id="s")
    assert (first["status"], first["error_code"], first["attempt"]) == ("error", reason, 1)
    assert (second["status"], second["model"], second["requested_model"]) == (
        "ok",
        "gpt-4o-mini",
        SONNET,
    )
    assert (second["attempt"], second["fallback_reason"]) == (2, reason)
    (health,) = await router.cooldowns().list()
    assert (health.model, health.reason, health.cooling) == (SONNET, reason, True)
    if reason == "rate_limited":  # the provider's retry-after is honoured
        left = health.until.timestamp() - time.time()
        assert 5 < left <= 7


async def test_an_unreachable_model_falls_back(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    router = make_router()
    nowhere = get_model(SONNET, api_key="k", base_url="http://127.0.0.1:9")
    answer = await router.request(ModelPolicy(nowhere, fallback=[MINI]), PROMPT)
    assert answer.fallbacks == (Fallback(SONNET, MINI, "connection_failed"),)
    await nowhere.aclose()


async def test_a_stream_broken_after_output_restarts_on_the_next_model(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    router = make_router()
    scripts["anthropic"].reply(
        text="one two three four five six", chunks=3, error="cut_stream", break_after=1
    )
    scripts["openai"].reply(text="A fresh answer.", chunks=2)
    seen: list[StreamEvent | Restart] = []
    answer = await router.request(POLICY, PROMPT, scope=Scope(session="s"), on_delta=seen.append)
    shown = [e for e in seen if isinstance(e, TextDelta | Restart)]
    assert shown == [
        TextDelta("one two "),
        Restart(SONNET, "stream_interrupted", "one two "),
        TextDelta("A fresh "),
        TextDelta("answer."),
    ]
    assert answer.text == "A fresh answer."
    first, _ = await router.ledger.calls(session_id="s")
    assert first["estimated"] and first["output_tokens"] > 0  # the cut stream is charged


async def test_errors_another_model_would_not_fix_are_raised(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    router = make_router()
    scripts["anthropic"].reply(error="bad_request")
    with pytest.raises(InvalidRequest):
        await router.request(POLICY, PROMPT)
    assert scripts["openai"].requests == [] and await router.cooldowns().list() == []


async def test_when_every_model_fails_the_error_says_why_for_each(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    router = make_router()
    scripts["anthropic"].reply(error="overloaded")
    scripts["openai"].reply(error="rate_limited", retry_after="3")
    with pytest.raises(NoModelAvailable) as caught:
        await router.request(POLICY, PROMPT)
    assert caught.value.reasons == {SONNET: "overloaded", MINI: "rate_limited"}
    assert isinstance(caught.value.__cause__, RateLimited)
    with pytest.raises(NoModelAvailable) as again:  # both cooling down now: nobody is asked
        await router.request(POLICY, PROMPT)
    assert again.value.reasons == {SONNET: "cooldown", MINI: "cooldown"}
    assert again.value.retry_after is not None and 0 < again.value.retry_after <= 3
    assert models_asked(scripts["anthropic"]) == ["claude-sonnet-4-5"]
