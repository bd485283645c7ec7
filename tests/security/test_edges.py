"""Every number a client sends is checked at the edge (422, or a `bad_frame` on a WebSocket),
never passed to the database to fail there: listing limits, SSE cursors, `Last-Event-ID`,
`resume`'s fields; and credentials with characters a comparison would choke on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.chat_server import frames_until

from .conftest import ADMIN, Server

BIG = 2**63


@pytest.mark.parametrize("limit", ["-1", "0", "501", "abc", "1e20", str(10**20), "1.5"])
async def test_a_listing_limit_out_of_range_is_refused(server: Server, limit: str) -> None:
    r = await server.http.get(f"/v1/sessions?limit={limit}", headers=ADMIN)
    assert r.status_code == 422, r.text


async def test_a_listing_limit_in_range_lists(server: Server) -> None:
    await server.new_session()
    r = await server.http.get("/v1/sessions?limit=500", headers=ADMIN)
    assert r.status_code == 200 and len(r.json()) == 1


async def sse_status(
    server: Server, session: dict[str, Any], query: str, last_event_id: str | None = None
) -> int:
    url = f"/v1/sessions/{session['session_id']}/events?token={session['token']}{query}"
    # As a browser sends it: UTF-8 bytes.
    headers = [] if last_event_id is None else [(b"last-event-id", last_event_id.encode())]
    async with asyncio.timeout(10), server.http.stream("GET", url, headers=headers) as r:
        return r.status_code


@pytest.mark.parametrize("after", ["-1", str(BIG), "1e20", "abc", str(10**30)])
async def test_an_sse_cursor_out_of_range_is_refused(server: Server, after: str) -> None:
    session = await server.new_session()
    assert await sse_status(server, session, f"&after={after}") == 422


@pytest.mark.parametrize("last_event_id", ["abc", str(BIG), "99999999999999999999", "٣", "-1"])
async def test_a_last_event_id_that_is_not_a_seq_is_refused(
    server: Server, last_event_id: str
) -> None:
    session = await server.new_session()
    assert await sse_status(server, session, "", last_event_id) == 422


async def test_the_largest_cursor_streams_nothing_and_does_not_fail(server: Server) -> None:
    session = await server.new_session()
    assert await sse_status(server, session, f"&after={BIG - 1}") == 200
    assert await sse_status(server, session, "", str(BIG - 1)) == 200
    assert await sse_status(server, session, "", "") == 200  # none


BAD_RESUMES: list[dict[str, Any]] = [
    {"after_seq": BIG},
    {"after_seq": -1},
    {"after_seq": True},
    {"after_seq": 1.5},
    {"after_seq": "1"},
    {"after_seq": 10**30},
    {"after_seq": 0, "turn_id": "t", "started": 1.0, "shown": BIG},
    {"after_seq": 0, "turn_id": "t", "started": 10**30, "shown": 0},
    {"after_seq": 0, "turn_id": "t", "started": "now", "shown": 0},
    {"after_seq": 0, "turn_id": "t", "started": True, "shown": 0},
]


async def test_a_resume_out_of_range_is_a_bad_frame_and_the_socket_goes_on(
    server: Server,
) -> None:
    session = await server.new_session()
    async with server.connect(session) as ws:
        await ws.recv()  # session.state
        for fields in BAD_RESUMES:
            await ws.send(json.dumps({"type": "resume", **fields}))
            frame = json.loads(await ws.recv())
            assert (frame["type"], frame["code"]) == ("error", "bad_frame"), fields
        for raw in (
            '{"type": "resume", "after_seq": 0, "turn_id": "t", "started": Infinity}',
            '{"type": "resume", "after_seq": 0, "turn_id": "t", "started": NaN}',
        ):
            await ws.send(raw)
            frame = json.loads(await ws.recv())
            assert frame["code"] == "bad_frame", raw
        await ws.send(json.dumps({"type": "resume", "after_seq": BIG - 1}))
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"  # nothing logged after the top
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))  # from the start again
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hi"}))
        assert (await frames_until(ws, "message.end"))[-1]["text"]


async def test_credentials_beyond_ascii_are_refused_not_failed(server: Server) -> None:
    r = await server.http.post("/dashboard/login", data={"key": "clé-\u00e9\U0001f600"})
    assert r.status_code == 401
    latin = "Bearer cl\u00e9".encode("latin-1")
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get("/v1/sessions", headers=[(b"authorization", latin)])
        assert r.status_code == 401
        cookie = "threadline_admin=\u00e9t\u00e9".encode()
        r = await client.get("/dashboard", headers=[(b"cookie", cookie)])
        assert r.status_code == 303


async def test_the_admin_asking_for_a_session_that_does_not_exist_gets_404(
    server: Server,
) -> None:
    """Not a stream that waits forever, a cancel that does nothing, or a token for nothing."""
    sid = "s_does_not_exist"
    asks = [
        ("GET", f"/v1/sessions/{sid}/events"),
        ("POST", f"/v1/sessions/{sid}/cancel"),
        ("POST", f"/v1/sessions/{sid}/token"),
        ("GET", f"/v1/sessions/{sid}/messages"),
    ]
    for method, path in asks:
        async with asyncio.timeout(10):
            r = await server.http.request(method, path, headers=ADMIN)
        assert r.status_code == 404, (method, path, r.status_code)
