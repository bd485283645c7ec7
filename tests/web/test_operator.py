"""Handing a session to a human operator, who answers in it, and exporting a session: the
operator API behind the admin key."""

from __future__ import annotations

import json

from ..chat_server import ADMIN, ChatServer, frames_until


async def test_an_operator_answers_during_a_handoff(chat: ChatServer) -> None:
    session = await chat.new_session()
    sid = session["session_id"]
    r = await chat.http.post(f"/v1/sessions/{sid}/operator", json={"state": "handoff"})
    assert r.status_code == 401  # the admin key is required
    r = await chat.http.post(
        f"/v1/sessions/{sid}/operator", json={"state": "nowhere"}, headers=ADMIN
    )
    assert r.status_code == 422 and "nowhere" in r.json()["detail"]
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        r = await chat.http.post(
            f"/v1/sessions/{sid}/operator",
            json={"text": "Hi, this is Ana from support.", "operator": "ana"},
            headers=ADMIN,
        )
        assert r.status_code == 200
        frame = (await frames_until(ws, "operator.message"))[-1]
    assert (frame["text"], frame["operator"]) == ("Hi, this is Ana from support.", "ana")
    exported = (await chat.http.get(f"/v1/sessions/{sid}/export", headers=ADMIN)).json()
    assert [(m["role"], m["content"]) for m in exported["messages"]] == [
        ("operator", "Hi, this is Ana from support.")
    ]
    md = await chat.http.get(f"/v1/sessions/{sid}/export?format=md&token={session['token']}")
    assert md.headers["content-type"].startswith("text/markdown")
    assert "**operator**" in md.text and "Ana from support" in md.text
    listed = (await chat.http.get("/v1/sessions", headers=ADMIN)).json()
    assert sid in [s["session_id"] for s in listed]
