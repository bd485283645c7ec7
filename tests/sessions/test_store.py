"""The sessions' SQL: a turn's answer and the session's new state land together, once."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from threadline.sessions import store


async def answer(conn: asyncpg.Connection, session_id: str, text: str, **turn: Any) -> int:
    """`store.add_answer` for turn `t1` replying to message 1, in state `start`, unless said."""
    given = {"turn_id": "t1", "reply_to": 1, "state": "start", "data": {}, "status": "active"}
    return await store.add_answer(conn, session_id, text, **(given | turn))


async def test_an_answer_is_stored_once_and_the_state_saved_each_time(
    conn: asyncpg.Connection,
) -> None:
    await store.create_session(conn, "s1", "support", "start", None, None)
    asked, _ = await store.add_message(conn, "s1", "user", "hello?", client_id="m1")
    first = await answer(conn, "s1", "hi", reply_to=asked, state="next", data={"n": 1})
    # The commit step replayed after a crash: the same answer, the state saved again.
    again = await answer(
        conn, "s1", "hi", reply_to=asked, state="later", data={"n": 2}, status="handoff"
    )
    later, _ = await store.add_message(conn, "s1", "user", "and?", client_id="m2")
    history = await store.messages(conn, "s1")
    info = await store.get_session(conn, "s1")
    assert first == again == asked + 1
    assert later == first + 1  # the replay took no number
    assert [(m.role, m.content, m.turn_id) for m in history] == [
        ("user", "hello?", None),
        ("assistant", "hi", "t1"),
        ("user", "and?", None),
    ]
    assert (info.state, info.data, info.status) == ("later", {"n": 2}, "handoff")


async def test_a_turn_loads_its_session_and_conversation_in_one_query(
    conn: asyncpg.Connection,
) -> None:
    await store.create_session(conn, "s1", "support", "start", "acme", "u1")
    first, _ = await store.add_message(conn, "s1", "user", "one", client_id="m1")
    second, _ = await store.add_message(conn, "s1", "user", "two", client_id="m2")
    # The answer to the first message came after the second one was numbered.
    await answer(conn, "s1", "re: one", reply_to=first)
    both = await store.session_and_messages(conn, "s1", up_to=first, limit=60)
    apart = (
        await store.get_session(conn, "s1"),
        await store.messages(conn, "s1", up_to=first, limit=60),
    )
    with pytest.raises(store.UnknownSession):
        await store.session_and_messages(conn, "nope")
    whole = await store.session_and_messages(conn, "s1", limit=2)
    assert both == apart
    assert [m.content for m in both[1]] == ["one", "re: one"]  # the turn for "one" sees no "two"
    assert [m.content for m in whole[1]] == ["re: one", "two"]
    assert second == first + 1


async def test_an_answer_for_a_missing_session_is_a_clear_error(conn: asyncpg.Connection) -> None:
    with pytest.raises(store.UnknownSession):
        await answer(conn, "nope", "hi", turn_id="t")
