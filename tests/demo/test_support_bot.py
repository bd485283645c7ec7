"""The demo support bot over a WebSocket: it answers the knowledge base's questions from the
passage that answers them, hands what the documents do not answer to a colleague, orders what
it is asked to order, and never caches an answer that says nothing."""

from __future__ import annotations

import json

import pytest

from threadline import Engine
from threadline.demo.agents import NOT_IN_KNOWLEDGE, support
from threadline.ledger import Ledger
from threadline.llm import Response, Usage
from threadline.llm.demo_replies import NOT_FOUND
from threadline.rag import CacheScope, HashEmbedder, SemanticCache

from ..chat_server import ChatServer, frames_until
from .conftest import answer_of, ask, say, session_info


async def test_an_error_code_is_answered_from_its_own_line(chat: ChatServer) -> None:
    frames = await ask(chat, await chat.new_session("support"), "What does error E7 mean?")
    text = answer_of(frames)
    assert "E7" in text and "membrane TL-4480" in text and text.endswith("[1]")
    assert "E1" not in text and "E2" not in text  # the other codes of the same passage
    sources = next(f for f in frames if f["type"] == "message.sources")["sources"]
    assert sources[0]["title"] == "Troubleshooting > Error codes"


@pytest.mark.model
async def test_the_carbon_block_question_is_answered_from_the_replacement_schedule(
    chat: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the `rag` extra's MiniLM embedder (what `serve` uses when it is installed)."""
    monkeypatch.setenv("THREADLINE_EMBEDDER", "minilm")
    assert support.knowledge is not None
    await support.knowledge.on(chat.sessions.engine.pool).collection()  # load, ingest
    session = await chat.new_session("support")
    frames = await ask(chat, session, "How often should I change the carbon block?")
    text = answer_of(frames)
    sources = next(f for f in frames if f["type"] == "message.sources")["sources"]
    assert sources[0]["title"] == "Filters and spare parts > Replacement schedule"
    assert "carbon block (part TL-4472): every 12 months" in text and text.endswith("[1]")
    assert "taste" not in text
    assert (await session_info(chat, session))["state"] == "answering"


async def test_what_the_documents_do_not_answer_goes_to_a_colleague(chat: ChatServer) -> None:
    session = await chat.new_session("support")
    frames = await ask(chat, session, "Can I pay with PayPal?")
    assert answer_of(frames) == NOT_IN_KNOWLEDGE
    assert frames[-1]["state"] == "handoff"
    info = await session_info(chat, session)
    assert (info["state"], info["status"]) == ("handoff", "handoff")
    assert await Ledger(chat.sessions.engine.pool).calls(agent="support") == []  # no model call


async def test_a_code_the_documents_never_mention_goes_to_a_colleague(chat: ChatServer) -> None:
    """E5 is of the family of E1 … E9 but no document mentions it: whatever passage comes
    first (the error codes) is about other codes. E9 is in the documents and is answered."""
    frames = await ask(chat, await chat.new_session("support"), "What does error E5 mean?")
    assert answer_of(frames) == NOT_IN_KNOWLEDGE
    frames = await ask(chat, await chat.new_session("support"), "What does error E9 mean?")
    assert "internal fault" in answer_of(frames)


async def test_an_order_for_two_is_placed_for_two(chat: ChatServer) -> None:
    async with chat.connect(await chat.new_session("support")) as ws:
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await ws.send(
            json.dumps(
                {"type": "message.send", "client_id": "m1", "text": "Please order two TL-4472"}
            )
        )
        frames = await frames_until(ws, "tool.confirm")
        confirm = frames[-1]
        assert (confirm["name"], confirm["arguments"]) == (
            "place_order",
            {"code": "TL-4472", "quantity": 2},
        )
        await ws.send(
            json.dumps({"type": "tool.confirm", "call_id": confirm["call_id"], "approve": True})
        )
        frames = await frames_until(ws, "message.end")
    result = next(f for f in frames if f["type"] == "tool.result")["result"]["result"]
    assert (result["ordered"], result["quantity"]) == (True, 2)
    assert "quantity: 2" in answer_of(frames)


async def test_small_talk_is_answered_without_a_handoff(chat: ChatServer) -> None:
    session = await chat.new_session("support")
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        first = answer_of(await say(ws, "What does error E4 mean?", "m1"))
        thanks = answer_of(await say(ws, "Thanks!", "m2"))
    assert "E4" in first and thanks.startswith("You're welcome")
    assert (await session_info(chat, session))["state"] == "answering"


async def cached_entries(chat: ChatServer, agent: str) -> int:
    count: int = await chat.sessions.engine.pool.fetchval(
        "SELECT count(*) FROM threadline.cache_entries WHERE scope->>'agent' = $1", agent
    )
    return count


async def test_an_answer_that_says_nothing_is_not_cached(chat: ChatServer) -> None:
    """The agent without the handoff rule asks the model about bicycles: it finds nothing and
    offers a colleague. That is not cached, so a second session is not served it; an answer
    from the documents is (the cache itself works)."""
    for n in range(2):
        frames = await ask(chat, await chat.new_session("ungated"), "Do you sell bicycles?")
        assert answer_of(frames) == "[demo model] " + NOT_FOUND
        assert not [f for f in frames if f["type"] == "message.start"][-1].get("cached"), n
    assert await cached_entries(chat, "ungated") == 0
    await ask(chat, await chat.new_session("ungated"), "What does error E9 mean?")
    assert await cached_entries(chat, "ungated") == 1


async def test_the_cache_refuses_a_non_answer_from_any_caller(database_url: str) -> None:
    async with Engine(database_url, worker=False) as engine:
        cache = SemanticCache(engine.pool, embedder=HashEmbedder())
        scope = CacheScope(agent="faq")

        def response(text: str) -> Response:
            return Response(text, (), Usage(10, 10), "end_turn", "threadline-demo", "demo")

        for text in (
            "[demo model] " + NOT_FOUND,
            "I could not find that in the provided context. It covers: 1, 2, 3, 4.",
            "I'm sorry, I can't help with that. Shall I put you in touch with a colleague?",
            "",
        ):
            stored = await cache.store_response("Do you sell bicycles?", response(text), scope)
            assert stored is None, text
        stored = await cache.store_response("Opening hours?", response("8:00 to 20:00."), scope)
        assert stored is not None
