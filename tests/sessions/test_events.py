"""The session event log: a user message, its event and its turn's start commit together; a
turn's answer, its pieces and its end likewise; pieces go out live only behind what readers
have, wait for the log and join in one row; events of a failed statement go back to the log.
(How the committed events reach readers in this and other processes: tests/web/test_hub.py.)"""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from threadline import Engine
from threadline.llm.demo import PACE_ENV
from threadline.sessions import Sessions, store
from threadline.sessions.events import (
    LIVE_LOG_HOLD_S,
    Committed,
    EventLog,
    Live,
    Piece,
    frame_text,
)

from ..chat_server import echo


def test_frame_text_is_the_logged_frame() -> None:
    data = {"turn_id": "t:1", "text": 'a "quoted"\nline é', "ts": 1.5}
    assert json.loads(frame_text("message.delta", 7, json.dumps(data))) == {
        **data,
        "type": "message.delta",
        "seq": 7,
    }
    assert json.loads(frame_text("cancel", 3, "{}")) == {"type": "cancel", "seq": 3}


async def test_a_message_its_event_and_its_turns_start_are_one_commit(
    database_url: str,
) -> None:
    async with Engine(database_url) as engine:
        sessions = Sessions(engine, [echo])
        session = await sessions.create("echo")
        seq, created = await sessions.send(session.id, "hello", "m1")
        run_id = f"turn:{session.id}:{seq}"
        assert engine.worker is not None and run_id in engine.worker.active  # launched here
        async with engine.pool.acquire() as conn:
            # Read before the turn ends: its outcome rewrites the run's row.
            xmins = await conn.fetch(
                "SELECT xmin::text AS tx FROM threadline.session_messages"
                " WHERE session_id = $1 AND seq = $2"
                " UNION ALL SELECT xmin::text FROM threadline.session_events"
                " WHERE session_id = $1 AND type = 'message.user'"
                " UNION ALL SELECT xmin::text FROM threadline.runs WHERE id = $3",
                session.id,
                seq,
                run_id,
            )
            run = await conn.fetchrow(
                "SELECT input, queue, queue_key FROM threadline.runs WHERE id = $1", run_id
            )
        assert await sessions.send(session.id, "hello", "m1") == (seq, False)  # a resend
        result = await engine.result(run_id, timeout=10)
        async with engine.pool.acquire() as conn:
            runs = await conn.fetchval("SELECT count(*) FROM threadline.runs")
    assert created and result["state"] == "start"
    assert len(xmins) == 3 and len({r["tx"] for r in xmins}) == 1
    assert json.loads(run["input"]) == {"args": [session.id, seq], "kwargs": {}}
    assert (run["queue"], run["queue_key"], runs) == ("threadline.turns", session.id, 1)


async def test_a_message_sent_while_the_sessions_events_are_on_their_way_follows_them(
    database_url: str,
) -> None:
    async with Engine(database_url, worker=False) as engine:
        sessions = Sessions(engine, [echo])
        session = await sessions.create("echo")
        log = sessions.events
        went_live: list[Live] = []
        log.watch_live(lambda piece: bool(went_live.append(piece)))

        # While a handle is open, the session's answer pieces do not go out live.
        along = log.along(session.id)
        assert along is not None and log.along(session.id) is None
        log.post(session.id, "message.start", {"turn_id": "t:1"})
        along.close()
        assert not went_live
        # The start is queued or being written: the message goes after it, through the log.
        assert log.along(session.id) is None
        await sessions.send(session.id, "next", "m1")
        await log.drain()
        free = log.along(session.id)  # all written and seen
        assert free is not None
        free.close()
        frames = [(e.seq, e.type) for e in await sessions.read(session.id, 0)]
        async with engine.pool.acquire() as conn:
            xmins = await conn.fetch(
                "SELECT xmin::text AS x FROM threadline.session_events WHERE session_id = $1"
                " UNION ALL SELECT xmin::text FROM threadline.session_messages"
                " WHERE session_id = $1",
                session.id,
            )
    assert frames == [(1, "message.start"), (2, "message.user")]
    assert len({r["x"] for r in xmins}) == 3  # three commits: the slow path


async def test_a_turns_answer_its_held_pieces_and_its_end_commit_together(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PACE_ENV, "0")  # the whole answer at once: no piece waits its time out
    async with Engine(database_url) as engine:
        sessions = Sessions(engine, [echo])
        session = await sessions.create("echo")
        told: list[Committed] = []
        ended = asyncio.Event()

        def tell(events: list[Committed]) -> None:
            told.extend(events)
            if any(e.type == "message.end" for e in events):
                ended.set()

        sessions.events.listen(tell)
        sessions.events.watch_live(lambda piece: True)  # a reader here takes the pieces
        await sessions.send(session.id, "hello there", "m1")
        await asyncio.wait_for(ended.wait(), 10)
        async with engine.pool.acquire() as conn:
            events = await conn.fetch(
                "SELECT seq, type, xmin::text AS tx FROM threadline.session_events"
                " WHERE session_id = $1 ORDER BY seq",
                session.id,
            )
            answer_tx = await conn.fetchval(
                "SELECT xmin::text FROM threadline.session_messages"
                " WHERE session_id = $1 AND role = 'assistant'",
                session.id,
            )
        logged = {e.seq: e.frame() for e in await sessions.read(session.id, 0)}
    types = [e["type"] for e in events]
    assert types[:2] == ["message.user", "message.start"] and types[-1] == "message.end"
    assert set(types[2:-1]) == {"message.delta"}
    # The pieces readers here had were held for the log; the answer's commit took them.
    assert {e["tx"] for e in events[1:]} == {answer_tx}
    assert [e.seq for e in told] == [e["seq"] for e in events]  # each told once, in order
    for event in told:
        assert event.text is not None and json.loads(event.text) == logged[event.seq]
    assert [e.live for e in told] == [False] + [True] * (len(told) - 2) + [False]


async def test_events_taken_for_a_statement_that_fails_go_back_to_the_log(
    database_url: str,
) -> None:
    async with Engine(database_url, worker=False) as engine:
        sessions = Sessions(engine, [echo])
        session = await sessions.create("echo")
        log = sessions.events
        log.watch_live(lambda piece: True)
        log.post(session.id, "message.start", {"turn_id": "t:1"})
        log.post(session.id, "message.delta", {"turn_id": "t:1", "text": "Hi", "offset": 0})
        along = log.along(session.id, take_queued=True)
        assert along is not None and along.queued()[0] == ["message.start", "message.delta"]
        with along, pytest.raises(asyncpg.CheckViolationError):
            async with engine.pool.acquire() as conn:
                await store.add_answer(
                    conn,
                    session.id,
                    "Hi",
                    turn_id="t:1",
                    reply_to=1,
                    state="start",
                    data={},
                    status="no such status",  # the statement fails: nothing is logged by it
                    along=along,
                    event=("message.end", {"text": "Hi"}),
                )
        await log.drain()
        frames = [(e.seq, e.type, e.data.get("text")) for e in await sessions.read(session.id, 0)]
    assert frames == [(1, "message.start", None), (2, "message.delta", "Hi")]


async def test_deltas_queued_behind_a_commit_go_out_as_one_frame(database_url: str) -> None:
    """A session's delta that finds the previous one still queued, made well before it (the
    log fell behind the model), joins it; deltas made together (a cached answer replayed),
    an event of another kind or another turn's delta keep them apart; other sessions'
    events in between do not."""
    async with Engine(database_url, worker=False) as engine:
        sessions = Sessions(engine, [echo])
        one, two = (await sessions.create("echo")).id, (await sessions.create("echo")).id
        log = EventLog(engine.pool)

        def delta(session: str, turn: str, text: str, ts: float) -> None:
            log.post(session, "message.delta", {"turn_id": turn, "text": text, "ts": ts})

        delta(one, "t:1", "a ", 1.0)  # queued in one tick: nothing written yet
        delta(one, "t:1", "b ", 1.0)
        delta(two, "t:9", "x ", 1.0)
        delta(one, "t:1", "c ", 1.05)
        delta(one, "t:1", "d ", 1.1)
        log.post(one, "message.end", {"turn_id": "t:1", "text": "a b c d "})
        delta(one, "t:2", "e ", 2.0)
        delta(one, "t:3", "f ", 3.0)
        await log.drain()
        frames = [e.frame() for e in await sessions.read(one, 0)]
        assert [(f["type"], f["text"]) for f in frames] == [
            ("message.delta", "a "),
            ("message.delta", "b c d "),
            ("message.end", "a b c d "),
            ("message.delta", "e "),
            ("message.delta", "f "),
        ]
        assert frames[1]["ts"] == 1.0  # the first token's time: latency is never understated
        assert [e.frame()["text"] for e in await sessions.read(two, 0)] == ["x "]


async def test_an_answer_goes_out_live_only_behind_what_readers_have(database_url: str) -> None:
    """An answer's events go to live listeners before they are written, unless an earlier
    event of their session is still unwritten and was not live (it would be overtaken):
    then they wait for the commit like any other. Each committed copy says where it sits,
    as its live original did."""
    async with Engine(database_url, worker=False) as engine:
        sessions = Sessions(engine, [echo])
        one, two = (await sessions.create("echo")).id, (await sessions.create("echo")).id
        log = EventLog(engine.pool)
        live: list[Live] = []
        committed: list[Committed] = []
        log.watch_live(live.append)
        log.listen(committed.extend)

        def delta(session: str, text: str, offset: int) -> None:
            data = {"turn_id": "t:1", "text": text, "offset": offset}
            log.post(session, "message.delta", data)

        log.post(one, "message.start", {"turn_id": "t:1", "ts": 1.0})
        delta(one, "ab", 0)
        log.post(one, "tool.call", {"turn_id": "t:1", "name": "lookup"})
        delta(one, "cd", 2)  # behind the unwritten tool.call: not live
        delta(two, "xy", 0)  # another session: nothing of its own unwritten
        log.post(one, "message.delta", {"turn_id": "t:1", "text": "no offset"})
        assert [(e.session_id, e.type, e.piece) for e in live] == [
            (one, "message.start", Piece("t:1", 0, 0, 1.0)),
            (one, "message.delta", Piece("t:1", 0, 2)),
            (two, "message.delta", Piece("t:1", 0, 2)),
        ]
        assert json.loads(live[1].text) == {
            "type": "message.delta",
            "turn_id": "t:1",
            "text": "ab",
            "offset": 0,
        }
        await log.drain()
        delta(one, "ef", 11)  # all written now: live again
        await log.drain()
        assert live[-1].piece == Piece("t:1", 11, 13)
        # Live pieces queued together, made far enough apart, join in the log; the
        # committed copy covers both.
        for text, offset, ts in (("gh", 13, 5.0), ("ij", 15, 5.1)):
            data = {"turn_id": "t:1", "text": text, "offset": offset, "ts": ts}
            log.post(one, "message.delta", data)
        await log.drain()
        assert [e.piece for e in live[-2:]] == [Piece("t:1", 13, 15), Piece("t:1", 15, 17)]
        mine = [(e.type, e.piece, e.live) for e in committed if e.session_id == one]
        assert mine == [
            ("message.start", Piece("t:1", 0, 0, 1.0), True),
            ("message.delta", Piece("t:1", 0, 2), True),
            ("tool.call", None, False),
            ("message.delta", Piece("t:1", 2, 4), False),
            ("message.delta", None, False),
            ("message.delta", Piece("t:1", 11, 13), True),
            ("message.delta", Piece("t:1", 13, 17), True),
        ]
        logged = [e.frame() for e in await sessions.read(one, 0)]
        assert [f.get("text") for f in logged[-2:]] == ["ef", "ghij"]


async def test_pieces_a_reader_took_wait_for_the_log_and_join_in_one_row(
    database_url: str,
) -> None:
    """Pieces that readers here have live are not written at once: they wait up to
    LIVE_LOG_HOLD_S, joining the piece they continue, unless an event of their session that
    must not wait comes (then they go first, in order). Other sessions' events do not hurry
    them; `drain` does."""
    async with Engine(database_url, worker=False) as engine:
        sessions = Sessions(engine, [echo])
        one, two = (await sessions.create("echo")).id, (await sessions.create("echo")).id
        log = EventLog(engine.pool)
        committed: list[Committed] = []
        log.watch_live(lambda live: live.session_id == one)  # a reader of `one` only
        log.listen(committed.extend)

        def delta(session: str, text: str, offset: int) -> None:
            data = {"turn_id": "t:1", "text": text, "offset": offset, "ts": 1.0 + offset / 1000}
            log.post(session, "message.delta", data)

        log.post(one, "message.start", {"turn_id": "t:1", "ts": 1.0})
        for offset, text in enumerate("abc"):
            delta(one, text, offset)
        delta(two, "x", 0)  # nobody here took it: written at once, alone
        await asyncio.sleep(0.1)
        assert [(e.session_id, e.type) for e in committed] == [(two, "message.delta")]

        log.post(one, "tool.call", {"turn_id": "t:1", "name": "lookup"})  # must not wait
        await asyncio.sleep(0.1)
        mine = [(e.type, e.piece) for e in committed if e.session_id == one]
        assert mine == [
            ("message.start", Piece("t:1", 0, 0, 1.0)),
            ("message.delta", Piece("t:1", 0, 3)),  # three pieces, one row
            ("tool.call", None),
        ]
        logged = [e.frame() for e in await sessions.read(one, 0)]
        assert [f["type"] for f in logged] == ["message.start", "message.delta", "tool.call"]
        assert logged[1]["text"] == "abc" and logged[1]["offset"] == 0
        assert logged[1]["ts"] == 1.0  # the first piece's time

        # Alone, held pieces are written once the oldest has waited its time.
        committed.clear()
        delta(one, "d", 3)  # behind the committed tool.call: live, held
        delta(one, "e", 4)
        await asyncio.sleep(0.05)
        assert committed == []
        await asyncio.sleep(LIVE_LOG_HOLD_S)
        assert [(e.type, e.piece) for e in committed] == [("message.delta", Piece("t:1", 3, 5))]

        # A piece that does not continue the held one is a row of its own; drain writes now.
        committed.clear()
        delta(one, "f", 5)
        delta(one, "h", 7)
        started = asyncio.get_running_loop().time()
        await log.drain()
        assert asyncio.get_running_loop().time() - started < LIVE_LOG_HOLD_S / 2
        assert [e.piece for e in committed] == [Piece("t:1", 5, 6), Piece("t:1", 7, 8)]


async def test_a_live_listener_given_as_a_bound_method_is_removed(database_url: str) -> None:
    """A hub registers `self.deliver_live` and removes it by the same expression: a new
    bound-method object each time, equal to the first but not the same object."""

    class Reader:
        def __init__(self) -> None:
            self.seen: list[Live] = []

        def deliver_live(self, live: Live) -> bool:
            self.seen.append(live)
            return True

    async with Engine(database_url, worker=False) as engine:
        session = (await Sessions(engine, [echo]).create("echo")).id
        log, reader = EventLog(engine.pool), Reader()
        log.watch_live(reader.deliver_live)
        log.post(session, "message.start", {"turn_id": "t:1", "ts": 1.0})
        log.unwatch_live(reader.deliver_live)
        log.post(session, "message.delta", {"turn_id": "t:1", "text": "ab", "offset": 0})
        await log.drain()
        assert [live.type for live in reader.seen] == ["message.start"]
