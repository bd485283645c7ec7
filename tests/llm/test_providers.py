"""The contract every adapter keeps, checked through each official SDK against a local server
that speaks the provider's wire protocol."""

from __future__ import annotations

import json
import socket
from decimal import Decimal

import genai_prices
import pytest

from threadline.llm import (
    AuthenticationFailed,
    ConnectionFailed,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    LLMError,
    Message,
    Overloaded,
    RateLimited,
    Response,
    ResponseBuilder,
    ServerError,
    StreamEnd,
    StreamEvent,
    StreamInterrupted,
    TextDelta,
    Timeout,
    ToolCall,
    ToolDef,
    UnknownModel,
    Usage,
    price,
)
from threadline.llm.model import Model

from .conftest import ProviderCase
from .servers.base import Reply, ScriptedCall

HISTORY = [Message.system("You are terse."), Message.user("What is the answer?")]
LOOKUP = ToolDef(
    "lookup_part",
    "Look up a part by its code.",
    {
        "type": "object",
        "properties": {"code": {"type": "string"}, "quantity": {"type": "integer"}},
        "required": ["code"],
    },
)


def expected_usage(case: ProviderCase, reply: Reply) -> Usage:
    return Usage(
        input_tokens=reply.input_tokens,
        output_tokens=reply.output_tokens,
        cache_read_tokens=reply.cache_read_tokens
        if "cache_read_tokens" in case.usage_fields
        else 0,
        cache_write_tokens=(
            reply.cache_write_tokens if "cache_write_tokens" in case.usage_fields else 0
        ),
        reasoning_tokens=reply.reasoning_tokens if "reasoning_tokens" in case.usage_fields else 0,
    )


def scripted(case: ProviderCase, **fields: object) -> Reply:
    """A reply with every usage count the provider can report set to a distinct value."""
    counts: dict[str, object] = {"input_tokens": 1200, "output_tokens": 345}
    counts |= {"cache_read_tokens": 400} if "cache_read_tokens" in case.usage_fields else {}
    counts |= {"cache_write_tokens": 100} if "cache_write_tokens" in case.usage_fields else {}
    counts |= {"reasoning_tokens": 45} if "reasoning_tokens" in case.usage_fields else {}
    return case.script.reply(**(counts | fields))


async def collect(model: Model, *args: object, **kwargs: object) -> list[StreamEvent]:
    return [event async for event in model.stream(*args, **kwargs)]  # type: ignore[arg-type]


def built(case: ProviderCase, events: list[StreamEvent]) -> Response:
    builder = ResponseBuilder(case.provider, case.model_name)
    for event in events:
        builder.add(event)
    return builder.build()


async def test_plain_and_streamed_calls_agree_and_report_the_server_usage(
    provider: ProviderCase,
) -> None:
    model = provider.model()
    reply = scripted(provider, text="Forty-two is the answer to everything, said the computer.")
    scripted(provider, text=reply.text)

    plain = await model.request(HISTORY)
    events = await collect(model, HISTORY)
    streamed = built(provider, events)

    assert plain.text == streamed.text == reply.text
    assert plain.usage == streamed.usage == expected_usage(provider, reply)
    assert plain.stop_reason == streamed.stop_reason == "end_turn"
    assert plain.model == streamed.model == provider.model_name
    assert plain.provider == provider.provider
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) >= 3, "the text should arrive in several chunks"
    assert isinstance(events[-1], StreamEnd)
    assert [e for e in events if isinstance(e, StreamEnd)] == [events[-1]]


async def test_cost_is_what_genai_prices_computes_for_the_reported_usage(
    provider: ProviderCase,
) -> None:
    model = provider.model()
    reply = scripted(provider)
    response = await model.request(HISTORY)
    cost = price(provider.provider, response.model, response.usage)

    if provider.provider == "ollama":
        assert cost.priced and cost.total_usd == Decimal(0) and cost.source == "free"
        return
    expected = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cache_read_tokens=expected_usage(provider, reply).cache_read_tokens,
            cache_write_tokens=expected_usage(provider, reply).cache_write_tokens,
        ),
        provider.model_name,
        provider_id=provider.provider,
    )
    assert cost.priced and cost.source == "genai-prices"
    assert cost.total_usd == expected.total_price > 0
    assert cost.input_usd == expected.input_price
    assert cost.output_usd == expected.output_price


async def test_reported_dated_model_id_is_kept(provider: ProviderCase) -> None:
    model = provider.model()
    provider.script.reply(model=f"{provider.model_name}-2025-01-01")
    provider.script.reply(model=f"{provider.model_name}-2025-01-01")
    assert (await model.request(HISTORY)).model == f"{provider.model_name}-2025-01-01"
    assert built(provider, await collect(model, HISTORY)).model.endswith("-2025-01-01")


async def test_tool_call_round_trip(provider: ProviderCase) -> None:
    model = provider.model()
    call = ScriptedCall("call_0", "lookup_part", {"code": "AB-1234", "quantity": 2})
    provider.script.reply(text="Let me check.", tool_calls=[call])
    provider.script.reply(text="Let me check.", tool_calls=[call])
    question = [Message.user("Is AB-1234 in stock? I need 2.")]

    plain = await model.request(question, tools=[LOOKUP])
    streamed = built(provider, await collect(model, question, tools=[LOOKUP]))

    for response in (plain, streamed):
        assert response.stop_reason == "tool_use"
        assert [(c.id, c.name, dict(c.arguments)) for c in response.tool_calls] == [
            ("call_0", "lookup_part", {"code": "AB-1234", "quantity": 2})
        ]
    sent_tools = json.dumps(provider.script.last.body)
    assert "lookup_part" in sent_tools and "Look up a part by its code." in sent_tools

    provider.script.reply(text="Yes, 12 are in stock.")
    follow_up = [
        *question,
        plain.message,
        Message.tool_result(plain.tool_calls[0].id, {"in_stock": 12}),
    ]
    answer = await model.request(follow_up, tools=[LOOKUP])
    assert answer.text == "Yes, 12 are in stock."
    sent = json.dumps(provider.script.last.body)
    assert "in_stock" in sent and "AB-1234" in sent


HTTP_ERRORS: dict[str, type[LLMError]] = {
    "rate_limited": RateLimited,
    "server_error": ServerError,
    "unavailable": Overloaded,
    "overloaded": Overloaded,
    "context_length": ContextWindowExceeded,
    "unauthorized": AuthenticationFailed,
    "not_found": UnknownModel,
    "bad_request": InvalidRequest,
}
STATUSES = {
    "rate_limited": 429,
    "server_error": 500,
    "unavailable": 503,
    "overloaded": 503,  # Anthropic's own: 529
    "context_length": 400,
    "unauthorized": 401,
    "not_found": 404,
    "bad_request": 400,
}
RETRYABLE = {"rate_limited", "server_error", "unavailable", "overloaded"}


@pytest.mark.parametrize("kind", list(HTTP_ERRORS))
async def test_http_errors_map_to_one_hierarchy(provider: ProviderCase, kind: str) -> None:
    model = provider.model()
    provider.script.reply(error=kind)
    with pytest.raises(HTTP_ERRORS[kind]) as plain:
        await model.request(HISTORY)
    provider.script.reply(error=kind)
    with pytest.raises(HTTP_ERRORS[kind]) as streamed:
        await collect(model, HISTORY)

    status = 529 if (provider.provider, kind) == ("anthropic", "overloaded") else STATUSES[kind]
    for error in (plain.value, streamed.value):
        assert type(error) is HTTP_ERRORS[kind]
        assert (error.provider, error.status, error.partial_text) == (provider.provider, status, "")
        assert error.retryable == (kind in RETRYABLE)
        if isinstance(error, RateLimited):
            assert error.retry_after == 7.0
    assert len(provider.script.requests) == 2, "adapters must not retry on their own"


async def test_retry_after_absent_is_none(provider: ProviderCase) -> None:
    model = provider.model()
    provider.script.reply(error="rate_limited", retry_after=None)
    with pytest.raises(RateLimited) as caught:
        await model.request(HISTORY)
    assert caught.value.retry_after is None


@pytest.mark.parametrize("kind", ["malformed_stream", "cut_stream", "stream_error"])
async def test_a_broken_stream_raises_with_the_text_received_so_far(
    provider: ProviderCase, kind: str
) -> None:
    model = provider.model()
    reply = provider.script.reply(error=kind, text="one two three four five six seven eight nine")
    received: list[str] = []
    expected = provider.stream_error if kind == "stream_error" else StreamInterrupted
    with pytest.raises(expected) as caught:
        async for event in model.stream(HISTORY):
            if isinstance(event, TextDelta):
                received.append(event.text)
            assert not isinstance(event, StreamEnd)
    assert reply.partial_text() == "one two three four five six "
    assert caught.value.partial_text == "".join(received) == reply.partial_text()
    assert caught.value.retryable
    assert caught.value.provider == provider.provider


async def test_content_filter_raises_content_filtered(provider: ProviderCase) -> None:
    if not provider.filters_content:  # Ollama has no content filter: a normal answer
        model = provider.model()
        provider.script.reply(stop="filtered")
        assert (await model.request(HISTORY)).stop_reason == "end_turn"
        return
    model = provider.model()
    provider.script.reply(stop="filtered")
    with pytest.raises(ContentFiltered):
        await model.request(HISTORY)
    reply = provider.script.reply(stop="filtered")
    with pytest.raises(ContentFiltered) as caught:
        await collect(model, HISTORY)
    assert caught.value.partial_text == reply.text
    assert not caught.value.retryable


async def test_max_tokens_stop_reason(provider: ProviderCase) -> None:
    model = provider.model()
    provider.script.reply(stop="max_tokens")
    provider.script.reply(stop="max_tokens")
    assert (await model.request(HISTORY, max_tokens=5)).stop_reason == "max_tokens"
    assert built(provider, await collect(model, HISTORY, max_tokens=5)).stop_reason == "max_tokens"


async def test_slow_answer_times_out(provider: ProviderCase) -> None:
    model = provider.model(timeout=0.3)
    provider.script.reply(delay=1.0)
    with pytest.raises(Timeout) as caught:
        await model.request(HISTORY)
    assert caught.value.retryable


async def test_unreachable_server_is_connection_failed(provider: ProviderCase) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = provider.model(base_url=f"http://127.0.0.1:{port}{provider.url_suffix}")
    with pytest.raises(ConnectionFailed) as caught:
        await model.request(HISTORY)
    assert caught.value.retryable and caught.value.provider == provider.provider
    with pytest.raises(ConnectionFailed):
        await collect(model, HISTORY)


async def test_tool_call_ids_survive_in_the_response_json(provider: ProviderCase) -> None:
    model = provider.model()
    provider.script.reply(tool_calls=[ScriptedCall("call_0", "lookup_part", {"code": "X-99"})])
    response = await model.request([Message.user("look up X-99")], tools=[LOOKUP])
    assert Response.from_json(json.loads(json.dumps(response.to_json()))) == response
    assert response.tool_calls == (ToolCall("call_0", "lookup_part", {"code": "X-99"}),)
