"""What a user makes of a conversation: thumbs up or down per answer (stored, shown on the
dashboard, kept across a reload), renaming it and deleting it — each only with the
session's own token."""

from __future__ import annotations

import json
from typing import Any

import httpx

from threadline.ledger import Ledger

from ..chat_server import ChatServer, frames_until


async def answered(chat: ChatServer, text: str = "Hello") -> tuple[dict[str, Any], str]:
    """A new session with one answer; (the session, the answer's turn id)."""
    session = await chat.new_session()
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": text}))
        end = (await frames_until(ws, "message.end"))[-1]
    return session, end["turn_id"]


def url(session: dict[str, Any], path: str = "") -> str:
    return f"/v1/sessions/{session['session_id']}{path}?token={session['token']}"


async def test_a_rating_is_stored_changed_and_taken_back(chat: ChatServer) -> None:
    session, turn = await answered(chat)
    feedback = url(session, "/feedback")
    r = await chat.http.post(feedback, json={"turn_id": turn, "rating": "down", "comment": "meh"})
    assert r.status_code == 200, r.text
    history = (await chat.http.get(url(session, "/messages"))).json()
    assert [m.get("rating") for m in history if m["role"] == "assistant"] == ["down"]

    await chat.http.post(feedback, json={"turn_id": turn, "rating": "up"})
    async with chat.sessions.engine.pool.acquire() as conn:
        rows = await conn.fetch("SELECT rating, comment, agent FROM threadline.session_feedback")
    assert [tuple(r) for r in rows] == [(1, None, "echo")]  # one row per answer, changed

    await chat.http.post(feedback, json={"turn_id": turn, "rating": None})
    history = (await chat.http.get(url(session, "/messages"))).json()
    assert all("rating" not in m for m in history)


async def test_bad_ratings_are_refused_with_a_reason(chat: ChatServer) -> None:
    session, turn = await answered(chat)
    feedback = url(session, "/feedback")
    r = await chat.http.post(feedback, json={"turn_id": turn, "rating": "meh"})
    assert r.status_code == 422
    r = await chat.http.post(feedback, json={"turn_id": "turn:nope:1", "rating": "up"})
    assert r.status_code == 404 and "has no answer" in r.json()["detail"]
    other, _ = await answered(chat)
    r = await chat.http.post(  # another session's answer, with this session's token
        f"/v1/sessions/{other['session_id']}/feedback?token={session['token']}",
        json={"turn_id": turn, "rating": "up"},
    )
    assert r.status_code == 403


async def test_feedback_shows_on_the_dashboard(chat: ChatServer) -> None:
    session, turn = await answered(chat, "Is this <b>bold</b>?")
    await chat.http.post(url(session, "/feedback"), json={"turn_id": turn, "rating": "down"})
    async with httpx.AsyncClient(base_url=chat.url, follow_redirects=True) as admin:
        await admin.post("/dashboard/login", data={"key": "admin-key"})
        page = await admin.get("/dashboard/feedback")
        assert page.status_code == 200
        assert "echo" in page.text and '<td class="bad">not helpful</td>' in page.text
        assert session["session_id"] in page.text
        assert "<b>bold</b>" not in page.text  # the answer quoted is escaped
        detail = await admin.get(f"/dashboard/sessions/{session['session_id']}")
        assert "not helpful" in detail.text


async def test_a_conversation_is_renamed_and_deleted_with_its_own_token(chat: ChatServer) -> None:
    session, _ = await answered(chat)
    other, _ = await answered(chat)
    r = await chat.http.patch(url(session), json={"title": "  Leak   sensor question "})
    assert r.status_code == 200
    assert (await chat.http.get(url(session))).json()["title"] == "Leak sensor question"
    r = await chat.http.patch(url(session), json={"title": ""})
    assert r.status_code == 422

    r = await chat.http.delete(f"/v1/sessions/{other['session_id']}?token={session['token']}")
    assert r.status_code == 403
    r = await chat.http.delete(url(session))
    assert r.status_code == 204
    assert (await chat.http.get(url(session))).status_code == 404
    assert (await chat.http.get(url(other))).status_code == 200
    # The bill stays: its ledger rows outlive the conversation.
    rows = await Ledger(chat.sessions.engine.pool).calls(session_id=session["session_id"])
    assert len(rows) == 1
    async with chat.sessions.engine.pool.acquire() as conn:
        left = await conn.fetchval(
            "SELECT count(*) FROM threadline.session_events WHERE session_id = $1",
            session["session_id"],
        )
    assert left == 0
