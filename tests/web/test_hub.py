"""How committed session events reach readers: the writing process's hub takes them from its
event log directly; another process's hub from the NOTIFY. Both must give the frames that
reading the log gives, each once."""

from __future__ import annotations

import asyncio
import json

from threadline import Engine
from threadline.sessions import Sessions
from threadline.sessions.events import EventLog
from threadline.web import Hub

from ..chat_server import echo


async def _settle(wake: asyncio.Event) -> None:
    await asyncio.wait_for(wake.wait(), 5.0)
    await asyncio.sleep(0.3)  # time for a notification that should not come


async def test_local_and_notified_frames_match_the_log(database_url: str) -> None:
    async with Engine(database_url, worker=False) as engine:
        sessions = Sessions(engine, [echo])
        session = await sessions.create("echo")
        hub = Hub(engine.url)
        await hub.start()
        try:
            hub.attach(sessions.events)
            sub = hub.subscribe(session.id)
            small = {"turn_id": "t:1", "text": "hello"}
            large = {"turn_id": "t:1", "text": "x" * 2000}

            # Written here: handed over directly, whole even when large, and only once (the
            # NOTIFY that comes back carries this log's origin and is skipped).
            await sessions.events.append(session.id, "message.delta", small)
            await sessions.events.append(session.id, "message.delta", large)
            await _settle(sub.wake)
            local, gap = sub.take(0)
            assert not gap and [e.seq for e in local] == [1, 2]
            assert not sub.inbox

            # Written by another process's log: from the NOTIFY; the large frame does not
            # ride on it, so the reader is told to read the log.
            other = EventLog(engine.pool)
            sub.wake.clear()
            await other.append(session.id, "message.delta", small)
            await other.append(session.id, "message.delta", large)
            await _settle(sub.wake)
            notified, gap = sub.take(2)
            assert gap and [e.seq for e in notified] == [3]

            logged = {e.seq: e.frame() for e in await sessions.read(session.id, 0)}
            for event in [*local, *notified]:
                assert event.text is not None
                assert json.loads(event.text) == logged[event.seq]
        finally:
            await hub.stop()


async def test_a_user_message_and_its_event_commit_together_and_reach_every_reader(
    database_url: str,
) -> None:
    async with Engine(database_url, worker=False) as engine:
        sessions = Sessions(engine, [echo])
        session = await sessions.create("echo")
        here, elsewhere = Hub(engine.url), Hub(engine.url)
        await here.start()
        await elsewhere.start()
        try:
            here.attach(sessions.events)
            near, far = here.subscribe(session.id), elsewhere.subscribe(session.id)
            text = 'say "hi" <b>\u00e9</b>'
            seq, created = await sessions.send(session.id, text, "m1")
            again = await sessions.send(session.id, text, "m1")
            await _settle(near.wake)
            await _settle(far.wake)
            (direct,), gap_here = near.take(0)
            (notified,), gap_there = far.take(0)
            logged = [e.frame() for e in await sessions.read(session.id, 0)]
            async with engine.pool.acquire() as conn:
                message_xmin = await conn.fetchval(
                    "SELECT xmin::text FROM threadline.session_messages WHERE session_id = $1",
                    session.id,
                )
                event_xmin = await conn.fetchval(
                    "SELECT xmin::text FROM threadline.session_events WHERE session_id = $1",
                    session.id,
                )
        finally:
            await here.stop()
            await elsewhere.stop()
    assert (seq, created) == (1, True) and again == (1, False)  # a resend writes nothing
    assert message_xmin == event_xmin  # one commit
    expected = {"type": "message.user", "seq": 1, "text": text, "client_id": "m1", "message_seq": 1}
    assert logged == [expected]
    assert not gap_here and not gap_there
    assert direct.text is not None and notified.text is not None
    assert json.loads(direct.text) == json.loads(notified.text) == expected
