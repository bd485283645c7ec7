"""What one client may hold open: connections per address, held and opened per minute
(counted before a byte is parsed, a trusted proxy's not counted), streams per session
(WebSockets and event streams together); a text frame that is not UTF-8 closes its socket
with one quiet line, not a traceback; a revocation closes the AI SDK's WebSocket as it does
the session's own; https answers carry Strict-Transport-Security."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
import websockets

from threadline.web.limits import Limits, Rate

from ..chat_server import frames_until
from .conftest import ADMIN, Serve, Server

ATTACKER, OTHER = "127.0.0.2", "127.0.0.3"  # loopback answers all of 127/8


async def connect_from(
    server: Server, source: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port), local_addr=(source, 0))


async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether a request on the connection gets an answer (False: closed or reset)."""
    try:
        writer.write(b"GET /chat-page.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
    except (ConnectionError, asyncio.IncompleteReadError):
        return False
    return head.startswith(b"HTTP/1.1 200")


async def test_one_address_holds_so_many_connections(serve: Serve) -> None:
    async with serve(limits=Limits(connections_per_client=3)) as server:
        held = [await connect_from(server, ATTACKER) for _ in range(3)]
        for reader, writer in held:
            assert await answered(reader, writer)  # kept alive, still held
        assert not await answered(*await connect_from(server, ATTACKER))  # a fourth: refused
        assert await answered(*await connect_from(server, OTHER))  # another address: its own
        r = await server.http.get("/chat-page.js")  # from 127.0.0.1, the trusted proxy's
        assert r.status_code == 200
        held[0][1].close()
        await asyncio.sleep(0.2)
        assert await answered(*await connect_from(server, ATTACKER))  # room again
        for _, writer in held[1:]:
            writer.close()


async def test_one_address_opens_connections_at_so_many_a_minute(serve: Serve) -> None:
    limits = Limits(new_connections=Rate(3, 60), connections_per_client=None)
    async with serve(limits=limits) as server:
        for _ in range(3):
            reader, writer = await connect_from(server, ATTACKER)
            assert await answered(reader, writer)
            writer.close()
        assert not await answered(*await connect_from(server, ATTACKER))  # a fourth: reset
        assert await answered(*await connect_from(server, OTHER))
        for _ in range(5):  # the trusted proxy's address (127.0.0.1): not counted
            assert (await server.http.get("/chat-page.js")).status_code == 200


async def test_a_websocket_counts_until_it_closes(serve: Serve) -> None:
    async with serve(limits=Limits(connections_per_client=2)) as server:
        session = await server.new_session()
        url = server.ws_url(session)
        async with websockets.connect(url, local_addr=(ATTACKER, 0)) as one:
            await one.send(json.dumps({"type": "resume", "after_seq": 0}))
            await frames_until(one, "session.state")
            held = await connect_from(server, ATTACKER)  # the second: room for it
            assert await answered(*held)
            assert not await answered(*await connect_from(server, ATTACKER))
            held[1].close()
        await asyncio.sleep(0.2)
        async with websockets.connect(url, local_addr=(ATTACKER, 0)) as again:
            await again.send(json.dumps({"type": "resume", "after_seq": 0}))
            await frames_until(again, "session.state")
            assert await answered(*await connect_from(server, ATTACKER))


async def test_event_streams_and_websockets_share_a_sessions_room(serve: Serve) -> None:
    async with serve(limits=Limits(streams_per_session=2)) as server:
        session = await server.new_session()
        events = f"{server.url}/v1/sessions/{session['session_id']}/events"
        params = {"token": session["token"]}
        async with (
            httpx.AsyncClient() as http,
            http.stream("GET", events, params=params) as first,
            server.connect(session) as ws,
        ):
            assert first.status_code == 200
            await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
            await frames_until(ws, "session.state")
            r = await http.get(events, params=params)
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            ai_sdk = f"{server.url}/v1/sessions/{session['session_id']}/ai-sdk/stream"
            assert (await http.get(ai_sdk, params=params)).status_code == 429
        async with httpx.AsyncClient() as http, http.stream("GET", events, params=params) as again:
            assert again.status_code == 200  # both closed: room again


async def test_a_text_frame_not_in_utf8_closes_the_socket_quietly(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    session = await server.new_session()
    caplog.set_level(logging.INFO)
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    path = f"/v1/sessions/{session['session_id']}/ws?token={session['token']}"
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    async with asyncio.timeout(5):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    mask = b"\x01\x02\x03\x04"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\xff\xfe"))
    writer.write(b"\x81\x82" + mask + payload)  # a final text frame of 2 bytes, masked
    async with asyncio.timeout(5):
        rest = await reader.read()  # to the close
    writer.close()
    assert b"\x88\x02\x03\xef" in rest  # a close frame with 1007
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


async def test_a_revocation_closes_the_ai_sdk_websocket(server: Server) -> None:
    session = await server.new_session()
    sid = session["session_id"]
    url = f"{server.url.replace('http', 'ws')}/v1/sessions/{sid}/ai-sdk/ws?token={session['token']}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "resume", "requestId": "r1", "id": "chat"}))
        assert json.loads(await ws.recv())["type"] == "no-active"
        r = await server.http.post(f"/v1/sessions/{sid}/revoke", headers=ADMIN)
        assert r.status_code == 200
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


@pytest.mark.parametrize(("proto", "expected"), [("https", True), ("http", False)])
async def test_https_answers_ask_browsers_to_keep_to_https(
    server: Server, proto: str, expected: bool
) -> None:
    r = await server.http.get("/chat-page.js", headers={"x-forwarded-proto": proto})
    assert ("strict-transport-security" in r.headers) == expected
    if expected:
        assert r.headers["strict-transport-security"] == "max-age=31536000"


def test_limits_for_connections_from_the_environment() -> None:
    limits = Limits.from_env(
        {
            "THREADLINE_CONNECTIONS_PER_CLIENT": "4",
            "THREADLINE_STREAMS_PER_SESSION": "2",
            "THREADLINE_RATE_CONNECTIONS": "30/1m",
        }
    )
    assert (limits.connections_per_client, limits.streams_per_session) == (4, 2)
    assert limits.new_connections == Rate(30, 60)
