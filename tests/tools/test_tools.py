"""Tools in a conversation: a tool call runs as a durable step and its result goes back to the
model; a tool that needs approval waits (durably) for it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from threadline.demo.agents import lookup_part, place_order
from threadline.tools import Tool, ToolError, tool

from ..chat_server import ChatServer, Screen, frames_until
from ..helpers import eventually


def test_a_typed_function_becomes_a_tool_with_a_schema() -> None:
    assert lookup_part.name == "lookup_part"
    assert lookup_part.description.startswith("Look up a part by its code")
    assert lookup_part.schema == {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "The part code, like TL-4471."}},
        "required": ["code"],
        "additionalProperties": False,
    }
    assert place_order.confirm and not lookup_part.confirm
    assert place_order.schema["properties"]["quantity"]["default"] == 1


async def test_arguments_are_validated_before_the_function_runs() -> None:
    calls: list[int] = []

    @tool
    def count(n: int) -> int:
        """Count."""
        calls.append(n)
        return n

    assert await count.run({"n": "3"}) == 3  # coerced as the schema allows
    with pytest.raises(ToolError, match="bad arguments for count"):
        await count.run({"n": "three"})
    assert calls == [3]
    assert isinstance(count, Tool)


async def start(ws: Any, text: str) -> None:
    await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
    await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": text}))


async def test_a_tool_call_runs_and_its_result_reaches_the_answer(chat: ChatServer) -> None:
    async with chat.connect(await chat.new_session("support")) as ws:
        await ws.recv()  # session.state
        await start(ws, "Can you look up part TL-4471?")
        frames = await frames_until(ws, "message.end")
    call = next(f for f in frames if f["type"] == "tool.call")
    result = next(f for f in frames if f["type"] == "tool.result")
    assert (call["name"], call["arguments"]) == ("lookup_part", {"code": "TL-4471"})
    assert result["result"]["result"]["name"] == "Sediment pre-filter"
    assert "Sediment pre-filter" in frames[-1]["text"]


async def test_a_tool_that_needs_approval_waits_for_it(chat: ChatServer) -> None:
    async with chat.connect(await chat.new_session("support")) as ws:
        await ws.send(json.dumps({"type": "tool.confirm", "call_id": "c1", "approve": True}))
        assert (await frames_until(ws, "error"))[-1]["code"] == "not_waiting"  # no turn yet
        await start(ws, "Please place an order for TL-4472")
        frames: list[dict[str, Any]] = await frames_until(ws, "tool.confirm")
        call_id = frames[-1]["call_id"]
        assert not any(f["type"] == "tool.result" for f in frames)  # nothing ordered yet
        await ws.send(json.dumps({"type": "tool.confirm", "call_id": call_id, "approve": "y"}))
        assert (await frames_until(ws, "error"))[-1]["code"] == "bad_frame"
        for n in range(3):  # ids the turn never asked about reach no mailbox
            await ws.send(json.dumps({"type": "tool.confirm", "call_id": f"x{n}", "approve": True}))
            assert (await frames_until(ws, "error"))[-1]["code"] == "not_waiting"
        async with chat.sessions.engine.pool.acquire() as conn:
            topics = await conn.fetch(
                "SELECT topic FROM threadline.messages WHERE run_id = $1", frames[-1]["turn_id"]
            )
        assert [r["topic"] for r in topics] == []
        await ws.send(json.dumps({"type": "tool.confirm", "call_id": call_id, "approve": True}))
        frames += await frames_until(ws, "message.end")
    result = next(f for f in frames if f["type"] == "tool.result")["result"]["result"]
    assert (result["ordered"], result["code"]) == (True, "TL-4472")
    assert "ORD-" in frames[-1]["text"]


async def test_an_answer_with_a_tool_round_starts_once_and_adds_up(chat: ChatServer) -> None:
    async with chat.connect(await chat.new_session("support")) as ws:
        await ws.recv()
        await start(ws, "Can you look up part TL-4480?")
        frames = await frames_until(ws, "message.end")
    assert sum(f["type"] == "message.start" for f in frames) == 1  # not a restart
    deltas = "".join(f["text"] for f in frames if f["type"] == "message.delta")
    assert deltas == frames[-1]["text"] and "\n\n" in deltas


async def test_a_turn_waiting_for_approval_keeps_the_next_message_waiting(
    chat: ChatServer,
) -> None:
    """One turn at a time per session, also while a turn waits (durably) for an approval:
    the next message's turn starts only once the waiting one has ended."""
    async with chat.connect(await chat.new_session("support")) as ws:
        await start(ws, "Please place an order for TL-4472")
        frames: list[dict[str, Any]] = await frames_until(ws, "tool.confirm")
        first_turn, call_id = frames[-1]["turn_id"], frames[-1]["call_id"]
        await ws.send(
            json.dumps({"type": "message.send", "client_id": "m2", "text": "Look up TL-4471"})
        )
        await frames_until(ws, "message.user")
        with pytest.raises(TimeoutError):  # nothing of a second turn while the first waits
            await frames_until(ws, "message.start", timeout=2.0)
        await ws.send(json.dumps({"type": "tool.confirm", "call_id": call_id, "approve": True}))
        frames = await frames_until(ws, "message.end")
        assert frames[-1]["turn_id"] == first_turn
        assert all(f.get("turn_id") in (None, first_turn) for f in frames)
        frames = await frames_until(ws, "message.end")
    assert frames[-1]["turn_id"] != first_turn and "TL-4471" in frames[-1]["text"]


async def test_a_replayed_turn_logs_its_tool_events_and_its_end_once(chat: ChatServer) -> None:
    """The state a crash leaves between the turn's commit (answer and `message.end`, one
    statement) and its outcome: the run is running again with no `commit` record. Its
    replay goes through the recorded model calls and tool step and commits again; the log
    keeps one `tool.call`, `tool.result` and `message.end`, numbered without a gap."""
    session = await chat.new_session("support")
    async with chat.connect(session) as ws:
        await ws.recv()
        await start(ws, "Can you look up part TL-4471?")
        end = (await frames_until(ws, "message.end"))[-1]
    turn_id, session_id = end["turn_id"], session["session_id"]
    engine = chat.sessions.engine
    async with engine.pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM threadline.steps WHERE run_id = $1 AND name = 'commit'", turn_id
        )
        await conn.execute(
            "UPDATE threadline.runs SET status = 'pending', owner = NULL, output = NULL, "
            "finished_at = NULL WHERE id = $1",
            turn_id,
        )
    engine.worker.wakeup.set()

    async def replayed() -> bool:
        async with engine.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT status = 'succeeded' AND EXISTS (SELECT 1 FROM threadline.steps "
                    "WHERE run_id = $1 AND name = 'commit') FROM threadline.runs WHERE id = $1",
                    turn_id,
                )
            )

    await eventually(replayed, what="the turn's replay")
    await chat.sessions.events.drain()
    async with engine.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT seq, type FROM threadline.session_events WHERE session_id = $1 ORDER BY seq",
            session_id,
        )
    types = [r["type"] for r in rows]
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert (types.count("tool.call"), types.count("tool.result"), types.count("message.end")) == (
        1,
        1,
        1,
    )
    assert types[-1] == "message.end"


async def test_the_text_before_an_approval_stays_on_screen_after_it(chat: ChatServer) -> None:
    """The turn waits for the user's yes and then runs on (from its journal): its answer goes
    on where it was, keeping the text said before the call, with nothing shown twice."""
    screen = Screen()
    async with chat.connect(await chat.new_session("support")) as ws:
        await ws.recv()
        await start(ws, "Please place an order for TL-4472")
        frames: list[dict[str, Any]] = await frames_until(ws, "tool.confirm")
        for frame in frames:
            screen.show(frame)
        turn = frames[-1]["turn_id"]
        before = screen.answers[turn]
        assert before  # the model said something before it asked
        await ws.send(
            json.dumps({"type": "tool.confirm", "call_id": frames[-1]["call_id"], "approve": True})
        )
        rest = await frames_until(ws, "message.end")
    for frame in rest:
        screen.show(frame)
    again = [f for f in rest if f["type"] == "message.start"]
    assert all(f.get("keep") == len(before) for f in again)
    assert screen.answers[turn] == rest[-1]["text"]
    assert rest[-1]["text"].startswith(before)
