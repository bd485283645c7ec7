"""Chat over a real server: streaming, resume after a dropped connection, idempotent resends,
several tabs, history, and a clear error for every kind of bad input."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import jwt
import pytest
import websockets

from ..chat_server import ORIGIN, ChatServer, Screen, frames_until


def answer_of(frames: list[dict]) -> tuple[str, str]:  # type: ignore[type-arg]
    deltas = "".join(f["text"] for f in frames if f["type"] == "message.delta")
    end = next(f for f in frames if f["type"] == "message.end")
    return deltas, end["text"]


async def test_an_answer_streams_in_pieces_and_lands_in_the_history(chat: ChatServer) -> None:
    session = await chat.new_session()
    async with chat.connect(session) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "session.state" and hello["state"] == "start"
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hello"}))
        frames = await frames_until(ws, "message.end")
    deltas, final = answer_of(frames)
    assert len([f for f in frames if f["type"] == "message.delta"]) >= 3
    assert deltas == final and final.startswith("[demo model]")
    screen = Screen()
    for frame in frames:  # logged frames in order, pieces without gap or overlap
        screen.show(frame)
    assert screen.answers[frames[-1]["turn_id"]] == final
    # The pieces went out as the model made them, before they were logged (no number yet).
    assert screen.live >= 3
    r = await chat.http.get(
        f"/v1/sessions/{session['session_id']}/messages", params={"token": session["token"]}
    )
    assert [(m["role"], m["content"]) for m in r.json()] == [
        ("user", "Hello"),
        ("assistant", final),
    ]


async def test_a_dropped_connection_resumes_with_nothing_missing_or_twice(
    chat: ChatServer,
) -> None:
    session = await chat.new_session()
    screen = Screen()
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Tell me"}))
        while screen.live < 3:
            screen.show(json.loads(await ws.recv()))
    # The connection is gone mid-answer, with pieces shown that the log may not have yet;
    # the answer goes on. The client says what it has: nothing comes twice, nothing is
    # missing (Screen checks every frame).
    turn = screen.current
    assert turn is not None
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps(screen.resume()))
        frames = await frames_until(ws, "message.end")
    for frame in frames:
        screen.show(frame)
    assert screen.answers[turn] == frames[-1]["text"]
    # A client that only says the last number it saw gets the rest of the log after it:
    # pieces it has may come again, and their offsets tell it so.
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        logged = await frames_until(ws, "message.end")
    assert [f["seq"] for f in logged] == list(range(1, len(logged) + 1))
    assert answer_of(logged) == (screen.answers[turn], screen.answers[turn])


async def test_a_resend_with_the_same_client_id_is_not_a_second_turn(chat: ChatServer) -> None:
    session = await chat.new_session()
    sid, token = session["session_id"], session["token"]
    body = {"client_id": "same", "text": "Once only"}
    first = await chat.http.post(f"/v1/sessions/{sid}/messages?token={token}", json=body)
    second = await chat.http.post(f"/v1/sessions/{sid}/messages?token={token}", json=body)
    assert first.json()["created"] is True and second.json()["created"] is False
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await frames_until(ws, "message.end")
    history = (await chat.http.get(f"/v1/sessions/{sid}/messages?token={token}")).json()
    assert [m["role"] for m in history] == ["user", "assistant"]


async def test_two_tabs_on_one_session_both_see_the_answer(chat: ChatServer) -> None:
    session = await chat.new_session()
    async with chat.connect(session) as one, chat.connect(session) as two:
        await one.recv()
        await two.recv()
        await two.send(json.dumps({"type": "resume", "after_seq": 0}))
        await one.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hi"}))
        a, b = await frames_until(one, "message.end"), await frames_until(two, "message.end")
    assert answer_of(a) == answer_of(b)
    assert any(f["type"] == "message.user" and f["text"] == "Hi" for f in b)


async def test_bad_frames_get_error_frames_and_the_connection_survives(chat: ChatServer) -> None:
    session = await chat.new_session()
    async with chat.connect(session) as ws:
        await ws.recv()
        cases = [
            ("{not json", "bad_frame"),
            (json.dumps(["a list"]), "bad_frame"),
            (json.dumps({"type": "launch.rockets"}), "unknown_type"),
            (json.dumps({"type": "resume", "after_seq": -3}), "bad_frame"),
            (json.dumps({"type": "message.send", "text": 5}), "bad_frame"),
            ("x" * 40_000, "too_large"),
            (
                json.dumps({"type": "message.send", "client_id": "big", "text": "y" * 3000}),
                "too_large",
            ),
        ]
        for raw, code in cases:
            await ws.send(raw)
            frame = json.loads(await ws.recv())
            assert (frame["type"], frame["code"]) == ("error", code), raw[:40]
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"


async def test_a_flood_of_messages_is_refused_politely(chat: ChatServer) -> None:
    session = await chat.new_session()
    async with chat.connect(session) as ws:
        await ws.recv()
        for i in range(12):
            await ws.send(json.dumps({"type": "message.send", "client_id": f"f{i}", "text": "hi"}))
        errors = []
        async with __import__("asyncio").timeout(20):
            while len(errors) < 4:
                frame = json.loads(await ws.recv())
                if frame["type"] == "error":
                    errors.append(frame["code"])
    assert set(errors) == {"rate_limited"}


async def test_tokens_are_scoped_to_one_session_and_expire(chat: ChatServer) -> None:
    mine, other = await chat.new_session(), await chat.new_session()
    expired = jwt.encode(
        {"sid": mine["session_id"], "exp": int(time.time()) - 5},
        "test-secret-of-at-least-32-bytes!!",
        "HS256",
    )
    forged = jwt.encode(
        {"sid": mine["session_id"], "exp": int(time.time()) + 60}, "y" * 32, "HS256"
    )
    for token, code in [(other["token"], 4403), (expired, 4401), (forged, 4401)]:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            async with websockets.connect(chat.ws_url(mine, token)) as ws:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    r = await chat.http.get(f"/v1/sessions/{mine['session_id']}/messages?token={other['token']}")
    assert r.status_code == 403
    r = await chat.http.get(f"/v1/sessions/{mine['session_id']}/messages")
    assert r.status_code == 401


async def test_origins_are_checked_on_the_handshake_and_in_cors(chat: ChatServer) -> None:
    session = await chat.new_session()
    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        async with chat.connect(session, origin="https://evil.example") as ws:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    async with chat.connect(session, origin=ORIGIN) as ws:
        assert json.loads(await ws.recv())["type"] == "session.state"
    r = await chat.http.post(
        "/v1/sessions", json={"agent": "echo"}, headers={"origin": "https://evil.example"}
    )
    assert r.status_code == 403
    r = await chat.http.options(
        "/v1/sessions",
        headers={"origin": ORIGIN, "access-control-request-method": "POST"},
    )
    assert r.headers.get("access-control-allow-origin") == ORIGIN


async def test_unknown_agent_and_session_are_clear_errors(chat: ChatServer) -> None:
    r = await chat.http.post("/v1/sessions", json={"agent": "nobody"})
    assert r.status_code == 404 and "nobody" in r.json()["detail"]
    r = await chat.http.get("/v1/sessions/s_missing", headers={"authorization": "Bearer admin-key"})
    assert r.status_code == 404


async def test_sse_streams_the_same_events_and_resumes_from_last_event_id(
    chat: ChatServer,
) -> None:
    session = await chat.new_session()
    sid, token = session["session_id"], session["token"]
    await chat.http.post(
        f"/v1/sessions/{sid}/messages?token={token}", json={"client_id": "m1", "text": "Hi"}
    )
    ids: list[int] = []
    comments: list[str] = []
    async with chat.http.stream(
        "GET", f"/v1/sessions/{sid}/events?token={token}", headers={"last-event-id": "1"}
    ) as r:
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            if line.startswith(":"):
                comments.append(line)
            if line.startswith("event: message.end"):
                break
    assert ids and ids[0] == 2 and ids == list(range(2, 2 + len(ids)))
    assert comments == []  # keep-alives only after 15 s of silence


async def test_event_numbers_are_in_order_and_the_log_contiguous_over_several_turns(
    chat: ChatServer,
) -> None:
    session = await chat.new_session()
    frames: list[dict] = []  # type: ignore[type-arg]
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        for i in range(3):
            await ws.send(json.dumps({"type": "message.send", "client_id": f"m{i}", "text": "Hi"}))
            frames += await frames_until(ws, "message.end")
    screen = Screen()
    for frame in frames:  # numbered frames in order; live pieces between them
        screen.show(frame)
    users = [f for f in frames if f["type"] == "message.user"]
    assert [u["message_seq"] for u in users] == [1, 3, 5]  # user, assistant, user, ...
    async with chat.connect(session) as ws:  # the log itself: every number, once, in order
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        logged: list[dict] = []  # type: ignore[type-arg]
        for _ in range(3):
            logged += await frames_until(ws, "message.end")
    assert [f["seq"] for f in logged] == list(range(1, len(logged) + 1))
    assert [f["type"] for f in logged if f["type"] != "message.delta"] == [
        f["type"] for f in frames if f["type"] not in ("message.delta", "logged")
    ]


async def test_the_terminal_client_streams_a_conversation(chat: ChatServer) -> None:
    from threadline.web.terminal import chat as terminal_chat

    async def lines():  # type: ignore[no-untyped-def]
        yield "Hello"
        yield ""
        yield "And again"

    printed: list[str] = []
    session = await terminal_chat(chat.url, "echo", lines(), printed.append)
    output = "".join(printed)
    assert output.count("[demo model]") == 2 and output.count("$0") == 2
    history = await chat.http.get(
        f"/v1/sessions/{session['session_id']}/messages", params={"token": session["token"]}
    )
    assert [m["role"] for m in history.json()] == ["user", "assistant", "user", "assistant"]


async def test_messages_sent_at_once_are_answered_one_at_a_time_in_order(
    chat: ChatServer,
) -> None:
    session = await chat.new_session()
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        for i in range(3):
            await ws.send(json.dumps({"type": "message.send", "client_id": f"q{i}", "text": "?"}))
        frames: list[dict] = []  # type: ignore[type-arg]
        while sum(f["type"] == "message.end" for f in frames) < 3:
            frames += await frames_until(ws, "message.end")
    turns = [f["turn_id"] for f in frames if f["type"] in ("message.start", "message.delta")]
    order = list(dict.fromkeys(turns))  # each turn's deltas come as one block, in order
    assert [t.rsplit(":", 1)[1] for t in order] == ["1", "2", "3"]  # user messages 1, 2, 3
    assert turns == sorted(turns, key=order.index)
    history = await chat.http.get(
        f"/v1/sessions/{session['session_id']}/messages", params={"token": session["token"]}
    )  # the conversation's order, though answers were numbered after all three questions
    assert [(m["role"], m["client_id"]) for m in history.json()] == [
        ("user", "q0"),
        ("assistant", order[0]),
        ("user", "q1"),
        ("assistant", order[1]),
        ("user", "q2"),
        ("assistant", order[2]),
    ]


async def test_pieces_reach_the_client_before_the_log_has_them(
    chat: ChatServer, database_url: str
) -> None:
    """While the log cannot write (its session row locked by another transaction), the
    answer still streams; once it can, its copies are not sent again and the log has it
    all."""
    session = await chat.new_session()
    sid = session["session_id"]
    screen = Screen()
    blocker = await asyncpg.connect(database_url)
    try:
        async with asyncio.timeout(20), chat.connect(session) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
            await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hi"}))
            while screen.live < 1:
                screen.show(json.loads(await ws.recv()))
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("SELECT 1 FROM threadline.sessions WHERE id = $1 FOR UPDATE", sid)
            logged = await blocker.fetchval(
                "SELECT count(*) FROM threadline.session_events WHERE session_id = $1", sid
            )
            before = screen.live
            while screen.live < before + 3:  # more pieces, none of them logged meanwhile
                screen.show(json.loads(await ws.recv()))
            assert logged == await blocker.fetchval(
                "SELECT count(*) FROM threadline.session_events WHERE session_id = $1", sid
            )
            await lock.rollback()
            frames = await frames_until(ws, "message.end")
            for frame in frames:
                screen.show(frame)
    finally:
        await blocker.close()
    turn = frames[-1]["turn_id"]
    assert screen.answers[turn] == frames[-1]["text"]
    async with chat.connect(session) as ws:  # and the log has every piece
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        assert answer_of(await frames_until(ws, "message.end"))[0] == screen.answers[turn]


async def test_a_client_that_shows_part_of_an_answer_gets_exactly_the_rest(
    chat: ChatServer,
) -> None:
    session = await chat.new_session()
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hi"}))
        frames = await frames_until(ws, "message.end")
    start = next(f for f in frames if f["type"] == "message.start")
    final = frames[-1]["text"]
    for shown in (0, 5, len(final) // 2, len(final)):  # within pieces, too
        screen = Screen()
        screen.answers[start["turn_id"]] = final[:shown]
        screen.started[start["turn_id"]] = start["ts"]
        screen.current = start["turn_id"]
        async with chat.connect(session) as ws:
            await ws.recv()
            await ws.send(json.dumps(screen.resume()))  # after_seq 0: the whole log
            for frame in await frames_until(ws, "message.end"):
                screen.show(frame)  # the same start is not sent again; no piece overlaps
        assert screen.answers[start["turn_id"]] == final
