"""The support demo bot answers from the bundled knowledge base (hybrid retrieval, cited),
and a first question asked again — in another session — is served from the semantic cache,
streamed like a live answer and recorded in the ledger as cached. Who shares cached answers:
one user's sessions by default (an anonymous session is its own user), everyone where the
knowledge says its answers do not depend on who asks; personal questions never; and clients
hear of the cache only where the agent says so."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from threadline.demo import support
from threadline.ledger import Ledger
from threadline.rag import looks_personal

from ..chat_server import ChatServer, chat_server, frames_until


async def ask(chat: ChatServer, session: dict[str, Any], text: str, n: int) -> list[dict[str, Any]]:
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await ws.send(json.dumps({"type": "message.send", "client_id": f"m{n}", "text": text}))
        frames = await frames_until(ws, "message.end")
        while sum(f["type"] == "message.end" for f in frames) < n:
            frames += await frames_until(ws, "message.end")
    return frames


def _messages(session: dict[str, Any]) -> str:
    return f"/v1/sessions/{session['session_id']}/messages?token={session['token']}"


def answer(frames: list[dict[str, Any]]) -> tuple[str, bool]:
    start = [f for f in frames if f["type"] == "message.start"][-1]
    return [f for f in frames if f["type"] == "message.end"][-1]["text"], bool(start.get("cached"))


async def test_answers_from_the_knowledge_base_and_serves_a_repeat_from_the_cache(
    database_url: str,
) -> None:
    shown = dataclasses.replace(support, show_cached=True)  # the "instant answer" mark
    async with chat_server(database_url, [shown]) as chat:
        await _repeat_served_from_the_cache(chat)


async def _repeat_served_from_the_cache(chat: ChatServer) -> None:
    first_session, second_session = (
        await chat.new_session("support"),
        await chat.new_session("support"),
    )
    first, cached = answer(
        await ask(chat, first_session, "What is the warranty on the leak sensor?", 1)
    )
    assert not cached and "1 year on the leak sensor" in first and "[1]" in first
    history = (await chat.http.get(_messages(first_session))).json()
    meta = history[-1]["meta"]
    assert meta["model"] == "demo:threadline-demo" and "cached" not in meta
    # The sources the `[n]` markers point at: the same list live, at the end and after a reload.
    sources = meta["sources"]
    assert [s["n"] for s in sources] == list(range(1, len(sources) + 1))
    assert all(s["title"] and s["document_id"] for s in sources)

    frames = await ask(chat, second_session, "what is the warranty on the leak sensor", 1)
    again, cached = answer(frames)
    assert cached and again == first
    end = [f for f in frames if f["type"] == "message.end"][-1]
    assert end["cached"] is True
    assert end["sources"] == sources  # a hit cites what the answer it repeats cited
    assert [f["sources"] for f in frames if f["type"] == "message.sources"] == [sources]
    assert (await chat.http.get(_messages(second_session))).json()[-1]["meta"]["cached"] is True
    deltas = [f["text"] for f in frames if f["type"] == "message.delta"]
    assert len(deltas) > 3 and "".join(deltas) == first  # streamed, piece by piece

    frames = await ask(chat, second_session, "Which part is the faucet kit?", 2)
    follow_up, cached = answer(frames)
    assert not cached and "TL-2210" in follow_up  # a follow-up is never served from the cache
    turn = [f for f in frames if f["type"] == "message.end"][-1]["turn_id"]
    of_turn = [f["type"] for f in frames if f.get("turn_id") == turn]
    assert of_turn.count("message.sources") == 1
    assert of_turn.index("message.sources") < of_turn.index("message.delta")  # before the text

    rows = await Ledger(chat.sessions.engine.pool).calls(agent="support")
    by_session = {(r["session_id"], r["status"]) for r in rows}
    assert by_session == {
        (first_session["session_id"], "ok"),
        (second_session["session_id"], "cached"),
        (second_session["session_id"], "ok"),
    }


async def test_clients_are_not_told_of_the_cache_by_default(chat: ChatServer) -> None:
    """The demo bot shares its manual's answers tenant-wide but does not say which came from
    the cache: the second session's answer carries no `cached`; the ledger has it."""
    first, second = await chat.new_session("support"), await chat.new_session("support")
    await ask(chat, first, "What is the warranty on the leak sensor?", 1)
    frames = await ask(chat, second, "what is the warranty on the leak sensor", 1)
    assert not [f for f in frames if "cached" in f], [f for f in frames if "cached" in f]
    assert "cached" not in (await chat.http.get(_messages(second))).json()[-1]["meta"]
    rows = await Ledger(chat.sessions.engine.pool).calls(session_id=second["session_id"])
    assert [r["status"] for r in rows] == ["cached"]


async def test_answers_are_shared_by_one_user_unless_the_knowledge_says_otherwise(
    database_url: str,
) -> None:
    """The default, `share_answers="user"`: two anonymous sessions asking the same question
    each get a model call; within one session the repeat is served. Personal questions (an
    email address) are neither served nor kept."""
    assert support.knowledge is not None
    knowledge = dataclasses.replace(support.knowledge, share_answers="user")
    private = dataclasses.replace(support, knowledge=knowledge, show_cached=True)
    async with chat_server(database_url, [private]) as chat:
        first, second = await chat.new_session("support"), await chat.new_session("support")
        question = "What is the warranty on the leak sensor?"
        assert not answer(await ask(chat, first, question, 1))[1]
        assert not answer(await ask(chat, second, question, 1))[1]  # not the other's answer
        statuses = [r["status"] for r in await Ledger(chat.sessions.engine.pool).calls()]
        assert statuses == ["ok", "ok"]

        personal = "I am jane.doe@example.com, what is the warranty on the leak sensor?"
        for session in (await chat.new_session("support"), await chat.new_session("support")):
            assert not answer(await ask(chat, session, personal, 1))[1]
        async with chat.sessions.engine.pool.acquire() as conn:
            prompts = await conn.fetch("SELECT prompt FROM threadline.cache_entries")
        assert [r["prompt"] for r in prompts] == [question, question]  # one per user, no email


@pytest.mark.parametrize(
    "policy",
    [
        {"personal": lambda text: "1 year" in text},  # found in the answer, not the question
        {"keep_answer": lambda question, answer: "leak sensor" not in answer},
    ],
    ids=["personal data in the answer", "the agent's own rule"],
)
async def test_an_answer_the_agents_policy_turns_down_is_not_kept(
    database_url: str, policy: dict[str, Any]
) -> None:
    assert support.knowledge is not None
    knowledge = dataclasses.replace(support.knowledge, share_answers="tenant", **policy)
    agent = dataclasses.replace(support, knowledge=knowledge, show_cached=True)
    async with chat_server(database_url, [agent]) as chat:
        question = "What is the warranty on the leak sensor?"
        for _ in range(2):
            text, cached = answer(await ask(chat, await chat.new_session("support"), question, 1))
            assert "1 year on the leak sensor" in text and not cached
        statuses = [r["status"] for r in await Ledger(chat.sessions.engine.pool).calls()]
        assert statuses == ["ok", "ok"]
        async with chat.sessions.engine.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM threadline.cache_entries") == 0


def test_what_looks_personal() -> None:
    assert looks_personal("mail me at jane.doe@example.com")
    assert looks_personal("call +44 20 7946 0958 please")
    assert looks_personal("my card is 4111 1111 1111 1111")
    assert not looks_personal("What does error E7 mean?")
    assert not looks_personal("Order two TL-4472 filters")
    assert not looks_personal("Is 1,900 litres a day at 3 bar right?")
