"""Messages, tool definitions, responses and errors: validation and JSON round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest

from threadline.errors import ConfigurationError
from threadline.llm import (
    InvalidToolSchema,
    LLMError,
    Message,
    RateLimited,
    Response,
    ResponseBuilder,
    StreamEnd,
    StreamEvent,
    StreamInterrupted,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDef,
    Usage,
    UsageEvent,
    error_from_json,
)
from threadline.llm.errors import parse_retry_after, transport_error


def through_json(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(data))
    return result


def test_message_helpers_and_round_trip() -> None:
    call = ToolCall("call_1", "lookup_part", {"code": "AB-12", "nested": {"n": [1, 2]}})
    messages = [
        Message.system("Be brief."),
        Message.user("Is AB-12 in stock?"),
        Message.assistant("Checking.", (call,)),
        Message.tool_result("call_1", {"in_stock": 3}, name="lookup_part"),
        Message.tool_result("call_1", "plain text result"),
    ]
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[3].content == '{"in_stock": 3}'
    assert messages[3].tool_name == "lookup_part"
    for message in messages:
        assert Message.from_json(through_json(message.to_json())) == message
    assert ToolCall.from_json(through_json(call.to_json())) == call


def test_message_validation() -> None:
    with pytest.raises(ValueError, match="role"):
        Message("robot", "hi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tool_call_id"):
        Message("tool", "result")
    with pytest.raises(ValueError, match="assistant"):
        Message("user", "hi", tool_calls=(ToolCall("a", "b", {}),))


def test_tool_def_round_trip() -> None:
    tool = ToolDef(
        "place_order",
        "Order parts.",
        {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "quantity": {"type": "integer", "minimum": 1},
            },
            "required": ["code", "quantity"],
        },
    )
    assert ToolDef.from_json(through_json(tool.to_json())) == tool


@pytest.mark.parametrize(
    ("name", "parameters", "message"),
    [
        (
            "lookup",
            {"type": "object", "properties": {"code": {"type": "strin"}}},
            "properties/code/type",
        ),
        ("lookup", {"type": "object", "required": "code"}, "required"),
        ("lookup", {"type": "array", "items": {}}, "must describe an object"),
        ("look up", {"type": "object"}, "letters, digits"),
        ("", {"type": "object"}, "letters, digits"),
    ],
)
def test_invalid_tool_schema_is_rejected_clearly(
    name: str, parameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidToolSchema, match=message) as caught:
        ToolDef(name, "A tool.", parameters)
    assert isinstance(caught.value, ConfigurationError)


def test_usage_adds_and_round_trips() -> None:
    usage = Usage(100, 20, cache_read_tokens=30, cache_write_tokens=5, reasoning_tokens=7)
    assert usage + Usage(1, 2, 3, 4, 5) == Usage(101, 22, 33, 9, 12)
    assert usage.total_tokens == 120
    assert Usage.from_json(through_json(usage.to_json())) == usage
    assert Usage.from_json({"input_tokens": 5}) == Usage(input_tokens=5)


def test_response_round_trip() -> None:
    response = Response(
        text="Three in stock.",
        tool_calls=(ToolCall("c1", "lookup_part", {"code": "AB-12"}),),
        usage=Usage(10, 5, cache_read_tokens=2),
        stop_reason="tool_use",
        model="claude-sonnet-4-5-20250929",
        provider="anthropic",
    )
    assert Response.from_json(through_json(response.to_json())) == response
    assert response.message == Message.assistant("Three in stock.", response.tool_calls)


def test_response_builder_assembles_tool_calls_from_fragments() -> None:
    builder = ResponseBuilder("openai", "gpt-4o-mini")
    events: list[StreamEvent] = [
        UsageEvent(Usage(input_tokens=9)),
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCallDelta(1, "c2", "place_order", '{"qty"'),
        ToolCallDelta(0, "c1", "lookup_part", ""),
        ToolCallDelta(0, None, None, '{"code": '),
        ToolCallDelta(1, None, None, ": 2}"),
        ToolCallDelta(0, None, None, '"AB"}'),
        ToolCallDelta(2, "c3", "broken", '{"oops'),
        StreamEnd("tool_use", Usage(9, 4), "gpt-4o-mini-2024-07-18"),
    ]
    for event in events:
        builder.add(event)
    response = builder.build()
    assert response.text == "Hello"
    assert response.tool_calls == (
        ToolCall("c1", "lookup_part", {"code": "AB"}),
        ToolCall("c2", "place_order", {"qty": 2}),
        ToolCall("c3", "broken", {"_raw_arguments": '{"oops'}),
    )
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.usage == Usage(9, 4)


def test_response_builder_without_end_is_an_interrupted_stream() -> None:
    builder = ResponseBuilder("demo", "threadline-demo")
    builder.add(TextDelta("partial"))
    with pytest.raises(StreamInterrupted) as caught:
        builder.build()
    assert caught.value.partial_text == "partial"


def test_errors_round_trip_through_json() -> None:
    error = RateLimited(
        "slow down", provider="openai", status=429, retry_after=2.5, partial_text="x"
    )
    again = error_from_json(through_json(error.to_json()))
    assert isinstance(again, RateLimited)
    assert (again.provider, again.status, again.retry_after, again.partial_text) == (
        "openai",
        429,
        2.5,
        "x",
    )
    interrupted = error_from_json(StreamInterrupted("cut", provider="google").to_json())
    assert type(interrupted) is StreamInterrupted and interrupted.retryable
    assert type(error_from_json({"code": "something-new", "message": "?"})) is LLMError


def test_retry_after_header_forms() -> None:
    assert parse_retry_after({"Retry-After": "12"}) == 12.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_transport_errors_are_classified_by_kind() -> None:
    assert type(transport_error(TimeoutError("t"), provider="x")).__name__ == "Timeout"
    assert type(transport_error(ConnectionResetError("r"), provider="x")).__name__ == (
        "ConnectionFailed"
    )
    cut = transport_error(
        ConnectionResetError("r"), provider="x", partial_text="ab", in_stream=True
    )
    assert isinstance(cut, StreamInterrupted) and cut.partial_text == "ab"
    assert transport_error(KeyError("not a transport error"), provider="x") is None
