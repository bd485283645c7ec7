"""Channels a layer above registers with `Engine.watch`: LISTENed before or after the engine
opens, again after the listener reconnects; the engine itself listens on its own only."""

from __future__ import annotations

import asyncpg

from threadline import Engine
from threadline.engine.listener import ENGINE_CHANNELS

from ..helpers import until

CHANNEL = "threadline_test_layer"


async def listened(engine: Engine) -> set[str]:
    """The channels the engine's listener connection LISTENs on, as the server sees them."""
    conn = engine._listener
    assert conn is not None
    return {row[0] for row in await conn.fetch("SELECT pg_listening_channels()")}


async def notify(database_url: str, channel: str, payload: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
    finally:
        await conn.close()


async def test_the_engine_listens_on_its_own_channels_only(database_url: str) -> None:
    async with Engine(database_url, worker=False) as engine:
        assert await listened(engine) == set(ENGINE_CHANNELS)
        assert all(engine.hears(channel) for channel in ENGINE_CHANNELS)
        assert not engine.hears("threadline_budgets")


async def test_a_channel_watched_once_the_engine_is_open_is_listened_at_once(
    database_url: str,
) -> None:
    heard: list[str | None] = []
    async with Engine(database_url, worker=False) as engine:
        engine.watch(CHANNEL, heard.append)
        await until(lambda: engine.hears(CHANNEL))
        assert CHANNEL in await listened(engine)
        await notify(database_url, CHANNEL, "changed")
        await until(lambda: heard == ["changed"])
    assert heard[0] == "changed" and set(heard[1:]) == {None}  # closed: the rest is missed


async def test_a_channel_watched_before_the_engine_opens_is_listened_when_it_opens(
    database_url: str,
) -> None:
    heard: list[str | None] = []
    engine = Engine(database_url, worker=False)
    engine.watch(CHANNEL, heard.append)
    assert not engine.hears(CHANNEL)
    async with engine:
        assert engine.hears(CHANNEL)  # by the time `open` returns
        await notify(database_url, CHANNEL, "one")
        await until(lambda: heard == ["one"])


async def test_every_channel_is_listened_again_after_a_reconnection(database_url: str) -> None:
    heard: list[str | None] = []
    async with Engine(database_url, worker=False) as engine:
        engine.watch(CHANNEL, heard.append)
        await until(lambda: engine.hears(CHANNEL))
        lost = engine._listener
        assert lost is not None
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", lost.get_server_pid())
        finally:
            await conn.close()
        await until(lambda: engine._listener is not lost and engine.hears(CHANNEL))
        assert heard[-2:] == [None, None]  # lost, then back: some may have been missed
        assert await listened(engine) == {*ENGINE_CHANNELS, CHANNEL}
        await notify(database_url, CHANNEL, "after")
        await until(lambda: heard[-1] == "after")
