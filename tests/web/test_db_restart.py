"""A serving process outlives a restart of its database (`pg_ctl restart -m fast`: every
connection cut): the answer being streamed ends once and whole, and the session goes on."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import websockets

from threadline import Engine, db
from threadline.ledger import Ledger

from .test_processes import (
    new_session,
    procs,
    read_until_end,
    serving,
    shown_answer,
    ws_url,
)

pytestmark = pytest.mark.processes

__all__ = ["procs"]


async def test_a_session_streams_through_a_database_restart_and_goes_on(
    database_url: str, pg_root: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    server, url = await serving(database_url, procs)
    session = await new_session(url)
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    async with websockets.connect(ws_url(url, session)) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Tell me"}))
        while sum(f["type"] == "message.delta" for f in first) < 3:
            first.append(json.loads(await ws.recv()))
        await asyncio.to_thread(db.restart_embedded, pg_root)
        await read_until_end(ws, first)
        await ws.send(json.dumps({"type": "message.send", "client_id": "m2", "text": "Again"}))
        await read_until_end(ws, second)
    assert server.poll() is None
    assert shown_answer(first) == first[-1]["text"] and "Tell me" in first[-1]["text"]
    assert shown_answer(second) == second[-1]["text"] and "Again" in second[-1]["text"]
    async with Engine(database_url, worker=False) as client:
        rows = await Ledger(client.pool).calls(session_id=session["session_id"])
        runs = await client.list_runs(workflow="threadline.turn")
        async with client.pool.acquire() as conn:
            stored = await conn.fetch(
                "SELECT role, content FROM threadline.session_messages"
                " WHERE session_id = $1 ORDER BY seq",
                session["session_id"],
            )
    assert [r["role"] for r in stored] == ["user", "assistant", "user", "assistant"]
    assert [r["content"] for r in stored][1::2] == [first[-1]["text"], second[-1]["text"]]
    assert sorted(r.status for r in runs) == ["succeeded", "succeeded"]
    assert [r["status"] for r in rows] == ["ok", "ok"]  # one charge per turn
