"""The Vercel AI SDK's UI message stream: what each session event becomes (steps, sources,
tools, approvals, restarts, metadata), the `useChat` endpoint, resuming the active turn's
stream after a drop, and `WebSocketChatTransport`'s protocol."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from threadline.rag.loaders import load_path
from threadline.web.aisdk import DECLINED, TurnStream, UIMessageStream, metadata

from ..chat_server import ChatServer, chat_server, echo
from .apps import AISDK_AGENTS, counter

TURN = "turn:s_1:2"
STOCK = "How many does the warehouse hold of TL-4480?"  # the `counter` agent calls a tool


def convert(frames: list[dict[str, Any]], *, resumed: bool = False) -> list[dict[str, Any]]:
    ui = UIMessageStream(TurnStream(TURN, 0, resumed=resumed))
    chunks = ui.start()
    for frame in frames:
        chunks += ui.feed({"turn_id": TURN, **frame})
    return chunks


def types(chunks: list[Any]) -> list[str]:
    return [c if isinstance(c, str) else c["type"] for c in chunks]


SOURCES = [
    {"n": 1, "title": "Warranty", "source": "https://x.example/w", "url": "https://x.example/w"},
    {"n": 2, "title": "Parts", "source": "parts.md", "url": None, "document_id": 7, "page": 3},
]
END = {
    "type": "message.end",
    "text": "…",
    "model": "demo:m",
    "cost": "0.0012",
    "cached": False,
    "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_tokens": 60},
    "budget": {"limit": "0.1", "spent": "0.0012", "left": "0.0988"},
}


def delta(text: str) -> dict[str, Any]:
    return {"type": "message.delta", "text": text}


def test_a_round_with_a_tool_and_the_answer_after_it_are_two_steps() -> None:
    chunks = convert(
        [
            {"type": "message.sources", "sources": SOURCES},
            {"type": "message.start"},
            delta("Let me "),
            delta("check."),
            {"type": "tool.call", "call_id": "c1", "name": "lookup", "arguments": {"code": "A"}},
            {"type": "tool.result", "call_id": "c1", "name": "lookup", "result": {"result": 5}},
            delta("\n\nIt is 5 [1]."),
            END,
        ]
    )
    assert types(chunks) == [
        "start",
        "start-step",
        "source-url",
        "source-document",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "message-metadata",
        "finish",
    ]
    assert chunks[0] == {"type": "start", "messageId": TURN}
    url, document = chunks[2], chunks[3]
    assert (url["sourceId"], url["url"], url["title"]) == ("1", "https://x.example/w", "Warranty")
    assert document["sourceId"] == "2" and document["mediaType"] == "text/plain"
    assert document["title"] == "Parts" and document["filename"] == "parts.md"
    place = document["providerMetadata"]["threadline"]
    assert (place["documentId"], place["page"]) == (7, 3)
    assert chunks[4]["id"] == chunks[5]["id"] != chunks[12]["id"] == chunks[13]["id"]
    assert chunks[8] == {
        "type": "tool-input-available",
        "toolCallId": "c1",
        "toolName": "lookup",
        "input": {"code": "A"},
    }
    assert chunks[9] == {"type": "tool-output-available", "toolCallId": "c1", "output": 5}
    assert chunks[13]["delta"] == "It is 5 [1]."  # a part of its own: no blank line before
    meta = chunks[-2]["messageMetadata"]
    assert chunks[-1] == {"type": "finish", "finishReason": "stop", "messageMetadata": meta}
    assert (meta["turnId"], meta["model"], meta["cost"], meta["cached"]) == (
        TURN,
        "demo:m",
        "0.0012",
        False,
    )
    assert meta["usage"] == {
        "inputTokens": 100,
        "inputTokenDetails": {"noCacheTokens": 40, "cacheReadTokens": 60, "cacheWriteTokens": 0},
        "outputTokens": 20,
        "outputTokenDetails": {"textTokens": 20, "reasoningTokens": 0},
        "totalTokens": 120,
    }
    assert meta["budget"]["left"] == "0.0988"


def test_fallbacks_and_budget_notices_are_transient_data_parts() -> None:
    chunks = convert(
        [
            {
                "type": "model.fallback",
                "from": "anthropic:a",
                "to": "openai:b",
                "reason": "cooldown",
            },
            {"type": "budget.capped", "model": "openai:b", "max_tokens": 300},
        ]
    )
    data = [c for c in chunks if c["type"].startswith("data-")]
    assert data == [
        {
            "type": "data-fallback",
            "data": {
                "from": "anthropic:a",
                "to": "openai:b",
                "reason": "cooldown",
                "kind": "model.fallback",
            },
            "transient": True,
        },
        {
            "type": "data-budget",
            "data": {"model": "openai:b", "max_tokens": 300, "kind": "budget.capped"},
            "transient": True,
        },
    ]


def test_other_turns_events_are_not_this_streams() -> None:
    ui = UIMessageStream(TurnStream(TURN, 0))
    assert ui.feed({"type": "message.delta", "turn_id": "turn:s_1:4", "text": "x"}) == []
    assert ui.feed({"type": "message.user", "text": "hi", "message_seq": 4}) == []
    assert ui.feed({"type": "message.cancelled", "turns": ["turn:s_1:4"]}) == []
    assert types(ui.feed({"type": "message.cancelled", "turns": [TURN]})) == ["abort"]
    assert ui.over and ui.feed({"type": "message.delta", "turn_id": TURN, "text": "x"}) == []


def test_a_restarted_answer_drops_its_text_and_keeps_what_else_its_step_showed() -> None:
    call = {"type": "tool.call", "call_id": "c1", "name": "lookup", "arguments": {}}
    result = {"type": "tool.result", "call_id": "c1", "result": {"result": 1}}
    chunks = convert(
        [
            {"type": "message.sources", "sources": SOURCES[1:]},
            {"type": "message.start"},
            delta("Half an ans"),
            {"type": "message.restart", "reason": "overloaded"},
            delta("A whole answer."),
            call,
            result,
            {"type": "message.start"},  # a replay after a crash: a restart of the next round
            delta("Done."),
            END,
        ]
    )
    assert types(chunks)[:9] == [
        "start",
        "start-step",
        "source-document",
        "text-start",
        "text-delta",
        "reset-step",  # the step's parts go...
        "source-document",  # ...and its sources come back
        "text-start",
        "text-delta",
    ]
    assert chunks[7]["id"] != chunks[3]["id"]
    # After a tool result the new round had shown nothing: nothing to drop.
    assert "reset-step" not in types(chunks)[9:]


def test_a_restart_drops_only_text_the_model_may_say_again() -> None:
    call = {"type": "tool.call", "call_id": "c1", "name": "lookup", "arguments": {}}
    result = {"type": "tool.result", "call_id": "c1", "result": {"result": 1}}
    # A model that fails over mid-answer: `message.restart`, then a new `message.start`.
    failover = [{"type": "message.restart"}, {"type": "message.start"}]
    chunks = convert([{"type": "message.start"}, delta("Hal"), *failover, delta("Whole.")])
    assert types(chunks).count("reset-step") == 1 and chunks[-1]["delta"] == "Whole."
    # A replay after a crash between a call and its result: the call's round is whole (its
    # text is not said again), the result comes, the next round begins with a start.
    chunks = convert([{"type": "message.start"}, delta("Let me look."), call, *failover[1:]])
    chunks += convert([result, delta("Found it."), END])[1:]
    assert "reset-step" not in types(chunks)


def test_a_failed_turn_ends_with_its_code_and_an_error_chunk() -> None:
    failure = {"type": "message.error", "code": "tool_failed", "message": "Sorry.", "retryable": 1}
    chunks = convert([{"type": "message.start"}, delta("Hm"), failure])
    assert types(chunks)[-4:] == ["text-end", "finish-step", "message-metadata", "error"]
    assert chunks[-2]["messageMetadata"]["error"] == {"code": "tool_failed", "retryable": True}
    assert chunks[-1] == {"type": "error", "errorText": "Sorry."}


def test_a_tool_error_is_a_tool_output_error() -> None:
    call = {"type": "tool.call", "call_id": "c1", "name": "lookup", "arguments": {}}
    result = {"type": "tool.result", "call_id": "c1", "result": {"error": "no such part"}}
    chunks = convert([call, result])
    assert chunks[-1] == {
        "type": "tool-output-error",
        "toolCallId": "c1",
        "errorText": "no such part",
    }


def test_a_call_waiting_for_approval_pauses_the_stream_and_a_replay_shows_the_answer() -> None:
    call = {"type": "tool.call", "call_id": "c1", "name": "place_order", "arguments": {}}
    confirm = {"type": "tool.confirm", "call_id": "c1", "name": "place_order", "arguments": {}}
    ui = UIMessageStream(TurnStream(TURN, 0))
    chunks = [
        *ui.start(),
        *ui.feed({"turn_id": TURN, **call}),
        *ui.feed({"turn_id": TURN, **confirm}),
    ]
    assert chunks[-1] == {"type": "tool-approval-request", "approvalId": "c1", "toolCallId": "c1"}
    assert ui.waiting == "c1" and not ui.over
    assert ui.pause() == [{"type": "finish-step"}, {"type": "finish", "finishReason": "tool-calls"}]
    assert ui.over

    for answer, ends in [
        ({"result": {"ordered": True}}, "tool-output-available"),
        ({"error": DECLINED}, "tool-output-denied"),
    ]:
        result = {"type": "tool.result", "call_id": "c1", "result": answer}
        replayed = convert([call, confirm, result])
        assert types(replayed)[-3:] == ["tool-approval-request", "tool-approval-response", ends]
        assert replayed[-2]["approved"] is (ends == "tool-output-available")
    # The continuation the client asks for with its answer: the message's step goes on.
    result = {"type": "tool.result", "call_id": "c1", "result": {"result": 1}}
    continued = convert([result, delta("Ordered."), END], resumed=True)
    assert types(continued)[:5] == [
        "start",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
    ]


# -- over a real server -------------------------------------------------------------------


@pytest.fixture
async def chat(database_url: str) -> AsyncIterator[ChatServer]:
    async with chat_server(database_url, [echo, *AISDK_AGENTS]) as server:
        yield server


def user(text: str, message_id: str = "u1") -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def body_of(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "chat-1", "trigger": "submit-message", "messages": list(messages), **extra}


def url_of(session: dict[str, Any], path: str = "") -> str:
    return f"/v1/sessions/{session['session_id']}/ai-sdk{path}?token={session['token']}"


async def read_sse(chat: ChatServer, method: str, url: str, **kwargs: Any) -> list[Any]:
    """A UI message stream's chunks (`[DONE]` as a string)."""
    chunks: list[Any] = []
    async with asyncio.timeout(20), chat.http.stream(method, url, **kwargs) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["x-vercel-ai-ui-message-stream"] == "v1"
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                chunks.append(line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]))
    return chunks


def text_of(chunks: list[Any]) -> str:
    """The answer the chunks show: its text parts, joined by a blank line."""
    parts: dict[str, str] = {}
    for c in chunks:
        if isinstance(c, dict) and c["type"] == "text-delta":
            parts[c["id"]] = parts.get(c["id"], "") + c["delta"]
    return "\n\n".join(parts.values())


async def history(chat: ChatServer, session: dict[str, Any]) -> list[dict[str, Any]]:
    r = await chat.http.get(url_of(session).replace("/ai-sdk", "/messages"))
    messages: list[dict[str, Any]] = r.json()
    return messages


async def test_a_turn_streams_its_sources_tool_steps_text_and_metadata(chat: ChatServer) -> None:
    session = await chat.new_session("counter")
    chunks = await read_sse(chat, "POST", url_of(session), json=body_of(user(STOCK)))
    kinds = types(chunks)
    sources = kinds.count("source-document")
    assert (
        sources >= 1
        and kinds[: 2 + sources] == ["start", "start-step"] + ["source-document"] * sources
    )
    steps = [kinds.index("tool-input-available"), kinds.index("tool-output-available")]
    assert kinds[steps[1] + 1 : steps[1] + 4] == ["finish-step", "start-step", "text-start"]
    assert kinds[-5:] == ["text-end", "finish-step", "message-metadata", "finish", "[DONE]"]
    assert kinds.count("start-step") == kinds.count("finish-step") == 2
    call, output = chunks[steps[0]], chunks[steps[1]]
    assert (call["toolName"], call["input"]) == ("warehouse_stock", {"code": "TL-4480"})
    assert output["output"] == {"code": "TL-4480", "in_stock": 12}
    answer = (await history(chat, session))[-1]
    assert text_of(chunks) == answer["content"]
    meta = chunks[-2]["messageMetadata"]
    assert meta == chunks[-3]["messageMetadata"] and meta["turnId"] == chunks[0]["messageId"]
    assert meta["model"] == "demo:threadline-demo" and meta["cost"] == "0"
    assert meta["usage"]["inputTokens"] > 0 and meta["usage"]["outputTokens"] > 0


WEB_PAGE = "https://tidewater.example/warranty-registration"


async def cite_a_web_page(chat: ChatServer, folder: Path) -> None:
    """A page of the `counter` agent's knowledge whose source is a URL."""
    page = folder / "registration.md"
    page.write_text(
        "# Warranty registration\n\nRegister the purifier online within 30 days to extend "
        "the warranty by a year: the registration form asks for the serial number.\n"
    )
    assert counter.knowledge is not None
    bound = counter.knowledge.on(chat.sessions.engine.pool)
    await bound.documents.ingest(await bound.collection(), load_path(page, source=WEB_PAGE))


async def test_a_source_with_a_url_is_a_source_url_part(chat: ChatServer, tmp_path: Path) -> None:
    await cite_a_web_page(chat, tmp_path)
    session = await chat.new_session("counter")
    question = user("How do I register the purifier to extend the warranty?")
    chunks = await read_sse(chat, "POST", url_of(session), json=body_of(question))
    urls = [c for c in chunks if isinstance(c, dict) and c["type"] == "source-url"]
    assert [c["url"] for c in urls] == [WEB_PAGE] and urls[0]["title"] == "Warranty registration"


async def test_a_resend_streams_the_same_turn_and_a_regenerate_a_new_one(chat: ChatServer) -> None:
    """useChat resends a request that broke with the same message id (the same turn streams
    again, nothing is asked twice) and `regenerate()` asks the same text for a new answer."""
    session = await chat.new_session()
    body = body_of(user("Hello"))
    first = await read_sse(chat, "POST", url_of(session), json=body)
    again = await read_sse(chat, "POST", url_of(session), json=body)
    assert text_of(first) and again == first
    assert [m["role"] for m in await history(chat, session)] == ["user", "assistant"]
    regenerate = {**body, "trigger": "regenerate-message", "messageId": first[0]["messageId"]}
    new = await read_sse(chat, "POST", url_of(session), json=regenerate)
    assert new[0]["messageId"] != first[0]["messageId"] and types(new)[-2:] == ["finish", "[DONE]"]
    messages = await history(chat, session)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[-1]["content"] == text_of(new)


async def test_a_tool_that_fails_shows_as_a_tool_output_error(chat: ChatServer) -> None:
    session = await chat.new_session("counter")
    chunks = await read_sse(
        chat, "POST", url_of(session), json=body_of(user("Ask the supplier about TL-4471"))
    )
    error = next(c for c in chunks if isinstance(c, dict) and c["type"] == "tool-output-error")
    assert "supplier does not answer" in error["errorText"]
    assert types(chunks)[-2:] == ["finish", "[DONE]"]  # the turn goes on after it


async def drop_after(chat: ChatServer, url: str, body: dict[str, Any], deltas: int) -> list[Any]:
    """Post a message and hang up after `deltas` pieces of the answer."""
    chunks: list[Any] = []
    async with asyncio.timeout(20), chat.http.stream("POST", url, json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                chunks.append(json.loads(line[6:]))
                if types(chunks).count("text-delta") == deltas:
                    break
    return chunks


async def test_a_dropped_stream_resumes_from_the_start_of_the_active_turn(chat: ChatServer) -> None:
    session = await chat.new_session("drawl")
    resume = url_of(session, "/stream")
    assert (await chat.http.get(resume)).status_code == 204  # no turn yet
    seen = await drop_after(chat, url_of(session), body_of(user("Tell me about filters")), 3)
    # useChat's DefaultChatTransport asks `${api}/${chatId}/stream`: both paths answer.
    replays = await asyncio.gather(
        *(read_sse(chat, "GET", url_of(session, path)) for path in ("/stream", "/chat-1/stream"))
    )
    for replay in replays:
        assert replay[: len(seen)] == seen  # the same message, from its start
        assert types(replay)[-2:] == ["finish", "[DONE]"]
    assert text_of(replay) == (await history(chat, session))[-1]["content"]
    assert (await chat.http.get(resume)).status_code == 204  # it is over


async def test_a_call_that_needs_approval_pauses_and_the_answer_continues_it(
    chat: ChatServer,
) -> None:
    session = await chat.new_session("counter")
    question = user("Please reserve TL-4471 for me")
    asked = await read_sse(chat, "POST", url_of(session), json=body_of(question))
    assert types(asked)[-4:] == ["tool-approval-request", "finish-step", "finish", "[DONE]"]
    assert asked[-2]["finishReason"] == "tool-calls"
    request = asked[-4]
    # The resume of the waiting turn shows the same, up to the question.
    assert await read_sse(chat, "GET", url_of(session, "/stream")) == asked
    # `addToolApprovalResponse` then a request with the answered message, as useChat sends it.
    part = {
        "type": "tool-reserve_item",
        "toolCallId": request["toolCallId"],
        "state": "approval-responded",
        "input": {"code": "TL-4471"},
        "approval": {"id": request["approvalId"], "approved": True},
    }
    answer = {
        "id": asked[0]["messageId"],
        "role": "assistant",
        "parts": [{"type": "step-start"}, part],
    }
    go_on = await read_sse(chat, "POST", url_of(session), json=body_of(question, answer))
    assert go_on[0] == {"type": "start", "messageId": asked[0]["messageId"]}
    assert types(go_on)[1:4] == ["tool-output-available", "finish-step", "start-step"]
    assert go_on[1]["output"] == {"reserved": True, "code": "TL-4471"}
    assert types(go_on)[-2:] == ["finish", "[DONE]"]
    # An answer for a message of another session, or with nothing waiting, is refused.
    stray = {**answer, "id": "turn:s_other:2"}
    r = await chat.http.post(url_of(session), json=body_of(question, stray))
    assert r.status_code == 422


async def test_bad_requests_are_clear_errors(chat: ChatServer) -> None:
    session = await chat.new_session()
    r = await chat.http.post(url_of(session), content=b"{not json")
    assert r.status_code == 422
    r = await chat.http.post(url_of(session), json={"messages": []})
    assert r.status_code == 422 and "user message" in r.json()["detail"]
    other = await chat.new_session()
    wrong = {**session, "token": other["token"]}
    assert (await chat.http.post(url_of(wrong), json=body_of(user("Hi")))).status_code == 403
    bad = {**session, "token": "nonsense"}
    assert (await chat.http.post(url_of(bad), json=body_of(user("Hi")))).status_code == 401
    assert (await chat.http.get(url_of(bad, "/stream"))).status_code == 401
    bearer = {"authorization": f"Bearer {session['token']}"}
    r = await chat.http.get(f"/v1/sessions/{session['session_id']}/ai-sdk/stream", headers=bearer)
    assert r.status_code == 204  # the token may come as a bearer token too


# -- WebSocketChatTransport ---------------------------------------------------------------


def ws_url(chat: ChatServer, session: dict[str, Any], token: str | None = None) -> str:
    base = chat.url.replace("http", "ws")
    return f"{base}{url_of({**session, 'token': token or session['token']}, '/ws')}"


def send_frame(request_id: str, *messages: dict[str, Any], **extra: Any) -> str:
    frame = {
        "type": "send",
        "requestId": request_id,
        "id": "chat-1",
        "trigger": "submit-message",
        "messageId": None,
        "messages": list(messages),
        "headers": {},
        "body": {},
        "metadata": None,
        **extra,
    }
    return json.dumps(frame)


def resume_frame(request_id: str, last: int | None = None) -> str:
    frame = {"type": "resume", "requestId": request_id, "id": "chat-1", "headers": {}, "body": {}}
    return json.dumps(frame if last is None else {**frame, "lastSequence": last})


async def responses(ws: Any, request_id: str, until: str = "end") -> list[dict[str, Any]]:
    """The frames answering `request_id` up to one of type `until` (others are dropped)."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while not frames or frames[-1]["type"] != until:
            frame = json.loads(await ws.recv())
            if frame["requestId"] == request_id:
                frames.append(frame)
    return frames


def chunks_of(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sequences = [f["sequence"] for f in frames if f["type"] == "chunk"]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    return [f["chunk"] for f in frames if f["type"] == "chunk"]


async def collect(ws: Any, until: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Frames by request id, until each request of `until` got a frame of its type there."""
    frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
    async with asyncio.timeout(20):
        while any(not frames[r] or frames[r][-1]["type"] != t for r, t in until.items()):
            frame = json.loads(await ws.recv())
            frames[frame["requestId"]].append(frame)
    return frames


async def test_the_websocket_transport_streams_correlated_turns(chat: ChatServer) -> None:
    session = await chat.new_session("counter")
    async with websockets.connect(ws_url(chat, session)) as ws:
        await ws.send(send_frame("r1", user(STOCK)))
        frames = await responses(ws, "r1")
        assert frames[0] == {"type": "start", "requestId": "r1"} and frames[1]["sequence"] == 0
        chunks = chunks_of(frames)
        over_http = await read_sse(chat, "POST", url_of(session), json=body_of(user(STOCK)))
        assert chunks == over_http[:-1]  # the same message, the same chunks
        # Two requests at once on one connection, each stream correlated by its id.
        await ws.send(send_frame("r2", user("How many does the warehouse hold of TL-4471?", "u2")))
        await ws.send(send_frame("r3", user("Ask the supplier about TL-4472", "u3")))
        both = await collect(ws, {"r2": "end", "r3": "end"})
        r2, r3 = chunks_of(both["r2"]), chunks_of(both["r3"])
        assert types(r2)[-1] == types(r3)[-1] == "finish"
        assert r2[0]["messageId"] != r3[0]["messageId"]
        await ws.send(resume_frame("r4"))
        assert await responses(ws, "r4", "no-active") == [{"type": "no-active", "requestId": "r4"}]


def deltas_in(frames: list[dict[str, Any]]) -> int:
    return sum(f["type"] == "chunk" and f["chunk"]["type"] == "text-delta" for f in frames)


async def test_the_websocket_transport_resumes_a_stream_it_aborted(chat: ChatServer) -> None:
    session = await chat.new_session("drawl")
    async with websockets.connect(ws_url(chat, session)) as ws:
        await ws.send(send_frame("r1", user("Tell me about filters")))
        seen: list[dict[str, Any]] = []
        while deltas_in(seen) < 3:
            seen += (await collect(ws, {"r1": "chunk"}))["r1"]
        await ws.send(json.dumps({"type": "abort", "requestId": "r1"}))
        await ws.send(resume_frame("r2"))
        frames = await collect(ws, {"r2": "end"})
        assert "end" not in types(frames["r1"])  # r1 stopped; the turn went on
        replay = chunks_of(frames["r2"])
        assert replay[: len(chunks_of(seen))] == chunks_of(seen)
        assert types(replay)[-1] == "finish"
    async with websockets.connect(ws_url(chat, session)) as ws:  # a new connection, too
        await ws.send(send_frame("r1", user("Tell me about membranes", "u2")))
        first = await collect(ws, {"r1": "chunk"})
        await ws.send(resume_frame("r2", last=4))  # what another client had: chunks 0-4
        frames = await collect(ws, {"r1": "end", "r2": "end"})
        tail = [f["sequence"] for f in frames["r2"] if f["type"] == "chunk"]
        assert tail[0] == 5
        assert chunks_of(frames["r2"]) == chunks_of(first["r1"] + frames["r1"])[5:]


async def test_the_websocket_transport_refuses_what_it_cannot_answer(chat: ChatServer) -> None:
    session, other = await chat.new_session(), await chat.new_session()
    for token, code in [("nonsense", 4401), (other["token"], 4403)]:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            async with websockets.connect(ws_url(chat, session, token)) as ws:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        async with websockets.connect(ws_url(chat, session), origin="https://evil.example") as ws:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    async with websockets.connect(ws_url(chat, session)) as ws:
        await ws.send(send_frame("r1"))  # no user message
        [error] = await responses(ws, "r1", "error")
        assert "user message" in error["errorText"]
        await ws.send(json.dumps({"type": "subscribe", "requestId": "r2"}))
        assert "unknown request type" in (await responses(ws, "r2", "error"))[0]["errorText"]
        await ws.send("not json")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


def test_the_metadata_tells_of_the_cache_only_where_the_answer_did() -> None:
    """An agent that hides cache hits (the default) has no `cached` in its `message.end`,
    and none in the AI SDK's metadata either: not even `false`."""
    assert metadata(END)["cached"] is False
    assert "cached" not in metadata({k: v for k, v in END.items() if k != "cached"})
