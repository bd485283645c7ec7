"""Text a database cannot store (NUL, unpaired surrogates) is refused at the edge with a
reason, never a 500 or a reset connection; the session goes on."""

from __future__ import annotations

import json

import pytest

from ..chat_server import ChatServer, frames_until

UNSTORABLE = ["hi\u0000there", "broken \ud800 half"]


@pytest.mark.parametrize("text", UNSTORABLE)
async def test_rest_refuses_unstorable_text_with_a_reason(chat: ChatServer, text: str) -> None:
    session = await chat.new_session()
    base = f"/v1/sessions/{session['session_id']}"
    token = f"?token={session['token']}"
    body = json.dumps({"client_id": "m1", "text": text})  # \u escapes: valid JSON
    r = await chat.http.post(
        base + "/messages" + token, content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and ("not text" in str(r.json()) or "unicode" in str(r.json()))
    r = await chat.http.patch(
        base + token,
        content=json.dumps({"title": text}),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    r = await chat.http.post(
        base + "/operator",
        content=json.dumps({"text": text}),
        headers={"content-type": "application/json", "authorization": "Bearer admin-key"},
    )
    assert r.status_code == 422
    r = await chat.http.post(base + "/messages" + token, json={"client_id": "m2", "text": "ok"})
    assert r.status_code == 202  # and the session goes on


@pytest.mark.parametrize("text", UNSTORABLE)
async def test_the_websocket_refuses_unstorable_text_and_stays_open(
    chat: ChatServer, text: str
) -> None:
    session = await chat.new_session()
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": text}))
        error = (await frames_until(ws, "error"))[-1]
        assert error["code"] == "bad_message" and "not text" in error["message"]
        await ws.send(json.dumps({"type": "message.send", "client_id": "m2", "text": "Hi"}))
        assert (await frames_until(ws, "message.end"))[-1]["text"]
