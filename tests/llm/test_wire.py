"""What each adapter puts on the wire, as the provider's server received it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from threadline.llm import Message, StreamEnd, ToolCall, ToolDef, estimate_tokens, get_model

from .servers.base import ProviderServer

TOOL = ToolDef(
    "lookup_part",
    "Look up a part by its code.",
    {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
)
CONVERSATION = [
    Message.system("You are a parts clerk."),
    Message.system("Answer in one sentence."),
    Message.user("Is AB-12 in stock?"),
    Message.assistant("Checking.", (ToolCall("call_7", "lookup_part", {"code": "AB-12"}),)),
    Message.tool_result("call_7", {"in_stock": 3}),
]


async def _drain(spec: str, server_url: str, **options: Any) -> None:
    model = get_model(spec, base_url=server_url, **options)
    try:
        async for _ in model.stream(
            CONVERSATION, tools=[TOOL], max_tokens=77, temperature=0.25, stop=["END"]
        ):
            pass
    finally:
        await model.aclose()


async def test_anthropic_request_shape(anthropic_api: ProviderServer) -> None:
    await _drain("anthropic:claude-haiku-4-5", anthropic_api.url, api_key="sk-ant-test")
    sent = anthropic_api.script.last
    assert sent.path == "/v1/messages"
    # Older SDKs send the key as x-api-key, newer ones as a bearer token.
    assert "sk-ant-test" in (
        sent.headers.get("x-api-key"),
        sent.headers.get("authorization", "")[7:],
    )
    body = sent.body
    assert body["system"] == "You are a parts clerk.\n\nAnswer in one sentence."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_7", "name": "lookup_part", "input": {"code": "AB-12"}},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_7", "content": '{"in_stock": 3}'}
    ]
    assert body["tools"] == [
        {
            "name": "lookup_part",
            "description": "Look up a part by its code.",
            "input_schema": dict(TOOL.parameters),
        }
    ]
    assert (body["max_tokens"], body["temperature"], body["stop_sequences"]) == (77, 0.25, ["END"])
    assert body["stream"] is True


async def test_openai_request_shape(openai_api: ProviderServer) -> None:
    await _drain("openai:gpt-4o-mini", openai_api.url + "/v1", api_key="sk-test")
    sent = openai_api.script.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    body = sent.body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert [m["role"] for m in body["messages"]] == [
        "system",
        "system",
        "user",
        "assistant",
        "tool",
    ]
    assert body["messages"][3]["tool_calls"] == [
        {
            "id": "call_7",
            "type": "function",
            "function": {"name": "lookup_part", "arguments": '{"code": "AB-12"}'},
        }
    ]
    assert body["messages"][4] == {
        "role": "tool",
        "tool_call_id": "call_7",
        "content": '{"in_stock": 3}',
    }
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup_part",
                "description": "Look up a part by its code.",
                "parameters": dict(TOOL.parameters),
            },
        }
    ]
    assert (body["max_completion_tokens"], body["temperature"], body["stop"]) == (77, 0.25, ["END"])


def _camel(data: dict[str, Any], snake: str) -> Any:
    """proto-JSON accepts a field by its snake_case or lowerCamelCase name."""
    head, *rest = snake.split("_")
    return data.get(snake, data.get(head + "".join(p.title() for p in rest)))


async def test_google_request_shape(google_api: ProviderServer) -> None:
    await _drain("google:gemini-2.5-flash", google_api.url, api_key="gem-test")
    sent = google_api.script.last
    assert sent.path.endswith("/models/gemini-2.5-flash:streamGenerateContent")
    assert sent.query.get("alt") == "sse"
    assert sent.headers["x-goog-api-key"] == "gem-test"
    body = sent.body
    system = _camel(body, "system_instruction")
    assert [p["text"] for p in system["parts"]] == [
        "You are a parts clerk.\n\nAnswer in one sentence."
    ]
    contents = body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    call = _camel(contents[1]["parts"][1], "function_call")
    assert (call["id"], call["name"], call["args"]) == ("call_7", "lookup_part", {"code": "AB-12"})
    result = _camel(contents[2]["parts"][0], "function_response")
    assert (result["name"], result["response"]) == ("lookup_part", {"in_stock": 3})
    declaration = _camel(body["tools"][0], "function_declarations")[0]
    assert declaration["name"] == "lookup_part"
    assert _camel(declaration, "parameters_json_schema") == dict(TOOL.parameters)
    config = _camel(body, "generation_config")
    assert _camel(config, "max_output_tokens") == 77
    assert config["temperature"] == 0.25
    assert _camel(config, "stop_sequences") == ["END"]


async def test_ollama_request_shape(ollama_api: ProviderServer) -> None:
    await _drain("ollama:llama3.2:3b", ollama_api.url, context_window=16384)
    sent = ollama_api.script.last
    assert sent.path == "/api/chat"
    body = sent.body
    assert body["model"] == "llama3.2:3b"
    assert body["stream"] is True
    assert [m["role"] for m in body["messages"]] == [
        "system",
        "system",
        "user",
        "assistant",
        "tool",
    ]
    assert body["messages"][3]["tool_calls"] == [
        {"function": {"name": "lookup_part", "arguments": {"code": "AB-12"}}}
    ]
    assert body["messages"][4]["tool_name"] == "lookup_part"
    assert body["messages"][4]["content"] == '{"in_stock": 3}'
    assert body["tools"][0]["function"]["name"] == "lookup_part"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["code"]
    assert body["options"] == {
        "num_predict": 77,
        "temperature": 0.25,
        "stop": ["END"],
        "num_ctx": 16384,
    }


@pytest.mark.parametrize(
    ("spec", "env"),
    [
        ("anthropic:claude-haiku-4-5", {"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "{url}"}),
        ("openai:gpt-4o-mini", {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "{url}/v1"}),
        ("google:gemini-2.5-flash", {"GEMINI_API_KEY": "k", "GOOGLE_GEMINI_BASE_URL": "{url}"}),
        ("google:gemini-2.5-flash", {"GOOGLE_API_KEY": "k", "GOOGLE_GEMINI_BASE_URL": "{url}"}),
        ("ollama:llama3.2", {"OLLAMA_HOST": "{url}"}),
    ],
)
async def test_keys_and_endpoints_come_from_the_environment(
    servers: dict[str, ProviderServer],
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    env: dict[str, str],
) -> None:
    for variable in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    server = servers[spec.split(":")[0]]
    server.script.reset()
    for variable, value in env.items():
        monkeypatch.setenv(variable, value.format(url=server.url))
    model = get_model(spec)
    try:
        response = await model.request([Message.user("hi")])
    finally:
        await model.aclose()
    assert response.text == server.script.default.text
    assert len(server.script.requests) == 1


async def test_openai_compatible_server_without_stream_usage_gets_an_estimate(
    openai_api: ProviderServer, caplog: pytest.LogCaptureFixture
) -> None:
    reply = openai_api.script.reply(send_usage=False)
    model = get_model("openai:gpt-4o-mini", api_key="k", base_url=openai_api.url + "/v1")
    events = [event async for event in model.stream([Message.user("hi")])]
    await model.aclose()
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.usage.output_tokens == estimate_tokens(reply.text) > 0
    assert end.usage.input_tokens > 0
    assert any("no usage" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
