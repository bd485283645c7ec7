"""The sessions' SQL: a turn's answer and the session's new state land together, once."""

from __future__ import annotations

import asyncpg
import pytest

from threadline.sessions import store


async def test_an_answer_is_stored_once_and_the_state_saved_each_time(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await store.create_session(conn, "s1", "support", "start", None, None)
        asked, _ = await store.add_message(conn, "s1", "user", "hello?", client_id="m1")
        first = await store.add_answer(
            conn,
            "s1",
            "hi",
            turn_id="t1",
            reply_to=asked,
            state="next",
            data={"n": 1},
            status="active",
        )
        # The commit step replayed after a crash: the same answer, the state saved again.
        again = await store.add_answer(
            conn,
            "s1",
            "hi",
            turn_id="t1",
            reply_to=asked,
            state="later",
            data={"n": 2},
            status="handoff",
        )
        later, _ = await store.add_message(conn, "s1", "user", "and?", client_id="m2")
        history = await store.messages(conn, "s1")
        info = await store.get_session(conn, "s1")
    finally:
        await conn.close()
    assert first == again == asked + 1
    assert later == first + 1  # the replay took no number
    assert [(m.role, m.content, m.turn_id) for m in history] == [
        ("user", "hello?", None),
        ("assistant", "hi", "t1"),
        ("user", "and?", None),
    ]
    assert (info.state, info.data, info.status) == ("later", {"n": 2}, "handoff")


async def test_a_turn_loads_its_session_and_conversation_in_one_query(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await store.create_session(conn, "s1", "support", "start", "acme", "u1")
        first, _ = await store.add_message(conn, "s1", "user", "one", client_id="m1")
        second, _ = await store.add_message(conn, "s1", "user", "two", client_id="m2")
        # The answer to the first message came after the second one was numbered.
        await store.add_answer(
            conn,
            "s1",
            "re: one",
            turn_id="t1",
            reply_to=first,
            state="start",
            data={},
            status="active",
        )
        both = await store.session_and_messages(conn, "s1", up_to=first, limit=60)
        apart = (
            await store.get_session(conn, "s1"),
            await store.messages(conn, "s1", up_to=first, limit=60),
        )
        with pytest.raises(store.UnknownSession):
            await store.session_and_messages(conn, "nope")
        whole = await store.session_and_messages(conn, "s1", limit=2)
    finally:
        await conn.close()
    assert both == apart
    assert [m.content for m in both[1]] == ["one", "re: one"]  # the turn for "one" sees no "two"
    assert [m.content for m in whole[1]] == ["re: one", "two"]
    assert second == first + 1


async def test_an_answer_for_a_missing_session_is_a_clear_error(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(store.UnknownSession):
            await store.add_answer(
                conn, "nope", "hi", turn_id="t", reply_to=1, state="s", data={}, status="active"
            )
    finally:
        await conn.close()
