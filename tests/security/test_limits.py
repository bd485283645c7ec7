"""What one client may ask: body size, new sessions and messages per address, messages per
session across its connections and transports (REST, WebSocket, the AI SDK's two),
WebSockets per session, and headers that must come whole and in time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from threadline.errors import ConfigurationError
from threadline.web.limits import Backoff, Limits, Rate, TokenBuckets, client_key

from .conftest import ADMIN, Serve, Server


def say(n: int) -> dict[str, str]:
    return {"client_id": f"m{n}", "text": f"message {n}"}


def messages_url(session: dict[str, Any]) -> str:
    return f"/v1/sessions/{session['session_id']}/messages?token={session['token']}"


def ai_sdk_body(n: int) -> dict[str, Any]:
    user = {"id": f"u{n}", "role": "user", "parts": [{"type": "text", "text": f"hi {n}"}]}
    return {"id": "chat-1", "trigger": "submit-message", "messages": [user]}


async def ws_error(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] == "error":
                return frame


async def test_a_body_over_the_limit_is_refused_before_it_is_read(serve: Serve) -> None:
    async with serve(limits=Limits(max_body_bytes=1024)) as server:
        big = {"agent": "echo", "user": "x" * 2000}
        r = await server.http.post("/v1/sessions", json=big)
        assert r.status_code == 413 and "connection" not in r.headers  # read past, kept
        # A body announced far over the limit is never read: the answer closes the connection.
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 9216\r\n\r\n{"
        )
        async with asyncio.timeout(10):
            answer = await reader.read()  # to the end: the server closes the connection
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()
        session = await server.new_session()

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            yield b'{"client_id": "c1", "text": "'
            for _ in range(10):
                yield b"x" * 200
            yield b'"}'

        r = await server.http.post(
            messages_url(session), content=chunked(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and "1024 bytes" in r.text
        r = await server.http.post(messages_url(session), json=say(1))
        assert r.status_code == 202  # the server goes on


async def test_new_sessions_are_limited_per_address_but_not_for_the_admin(serve: Serve) -> None:
    async with serve(limits=Limits(new_sessions=Rate(3, 60))) as server:
        for _ in range(3):
            await server.new_session()
        r = await server.http.post("/v1/sessions", json={"agent": "echo"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 19
        r = await server.http.post("/v1/sessions", json={"agent": "echo"}, headers=ADMIN)
        assert r.status_code == 201  # a backend making sessions for its users


async def test_a_session_takes_so_many_messages_whatever_the_transport(serve: Serve) -> None:
    """The rate is the session's: a new connection, or another transport, does not reset it."""
    limits = Limits(session_messages=Rate(4, 60))
    async with serve(limits=limits) as server:
        session = await server.new_session()
        assert (await server.http.post(messages_url(session), json=say(1))).status_code == 202
        for n in (2, 3):  # a connection each
            async with server.connect(session) as ws:
                await ws.send(json.dumps({"type": "message.send", **say(n)}))
                await ws.send(json.dumps({"type": "ping"}))  # answered once that is taken
                async with asyncio.timeout(10):
                    while json.loads(await ws.recv())["type"] != "pong":
                        pass
        ai_sdk = f"/v1/sessions/{session['session_id']}/ai-sdk/ws?token={session['token']}"
        async with websockets.connect(server.url.replace("http", "ws") + ai_sdk) as ws:
            frame = {"type": "send", "requestId": "r1", **ai_sdk_body(4)}
            await ws.send(json.dumps(frame))
            async with asyncio.timeout(10):
                assert json.loads(await ws.recv())["type"] == "start"
        # All four spent: each way in is refused now.
        r = await server.http.post(messages_url(session), json=say(5))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        url = f"/v1/sessions/{session['session_id']}/ai-sdk?token={session['token']}"
        r = await server.http.post(url, json=ai_sdk_body(6))
        assert r.status_code == 429
        async with server.connect(session) as ws:
            await ws.send(json.dumps({"type": "message.send", **say(7)}))
            error = await ws_error(ws)
            assert error["code"] == "rate_limited"
        async with websockets.connect(server.url.replace("http", "ws") + ai_sdk) as ws:
            await ws.send(json.dumps({"type": "send", "requestId": "r2", **ai_sdk_body(8)}))
            async with asyncio.timeout(10):
                error = json.loads(await ws.recv())
            assert (error["type"], error["code"], error["requestId"]) == (
                "error",
                "rate_limited",
                "r2",
            )
        history = await server.http.get(messages_url(session))
        sent = [m["content"] for m in history.json() if m["role"] == "user"]
        assert sorted(sent) == ["hi 4", "message 1", "message 2", "message 3"]


async def test_messages_are_limited_per_address_across_sessions(serve: Serve) -> None:
    async with serve(limits=Limits(messages=Rate(3, 60), session_messages=None)) as server:
        first, second = await server.new_session(), await server.new_session()
        for n, session in enumerate([first, second, first]):
            assert (await server.http.post(messages_url(session), json=say(n))).status_code == 202
        r = await server.http.post(messages_url(second), json=say(9))
        assert r.status_code == 429


async def test_a_session_takes_so_many_websockets(serve: Serve) -> None:
    async with serve(limits=Limits(streams_per_session=2)) as server:
        session = await server.new_session()
        async with server.connect(session) as one, server.connect(session) as two:
            for ws in (one, two):
                assert json.loads(await ws.recv())["type"] == "session.state"
            async with server.connect(session) as three:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await three.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
            other = await server.new_session()  # another session's are its own
            async with server.connect(other) as ws:
                assert json.loads(await ws.recv())["type"] == "session.state"
        async with server.connect(session) as again:  # the two closed: room again
            assert json.loads(await again.recv())["type"] == "session.state"


async def raw(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_headers_that_do_not_come_in_time_close_the_connection(serve: Serve) -> None:
    async with serve(limits=Limits(header_timeout=0.3)) as server:
        reader, writer = await raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and then nothing
        async with asyncio.timeout(3):
            assert await reader.read() == b""  # closed by the server
        writer.close()
        idle, idle_writer = await raw(server)  # nothing at all, not even a first byte
        async with asyncio.timeout(3):
            assert await idle.read() == b""
        idle_writer.close()
        # A keep-alive connection: idle between requests is the keep-alive's business (5 s);
        # the next request's headers have the header time again.
        reader, writer = await raw(server)
        writer.write(b"GET /chat-page.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        async with asyncio.timeout(3):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.4)
        writer.write(b"GET /chat-page.js HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half of one
        async with asyncio.timeout(3):
            assert await reader.read() == b""
        writer.close()


async def test_headers_over_the_limit_are_refused(serve: Serve) -> None:
    async with serve(limits=Limits(max_header_bytes=4096)) as server:
        reader, writer = await raw(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"x" * 8000 + b"\r\n\r\n")
        async with asyncio.timeout(3):
            answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 400")
        writer.close()
        r = await server.http.get("/widget.js", headers={"x-fine": "y" * 1000})
        assert r.status_code == 200


def test_token_buckets_refill_at_their_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(Rate(2, 10), clock=lambda: now[0])
    assert [buckets.take("a"), buckets.take("a")] == [0, 0]
    assert buckets.take("a") == pytest.approx(5.0)  # one token every 5 s
    assert buckets.take("b") == 0  # another key, another bucket
    now[0] = 5.0
    assert buckets.take("a") == 0 and buckets.take("a") == pytest.approx(5.0)
    assert TokenBuckets(None).take("a") == 0  # no rate: no limit


def test_token_buckets_forget_full_ones_when_many() -> None:
    now = [0.0]
    buckets = TokenBuckets(Rate(1, 1), clock=lambda: now[0])
    buckets.MAX_KEYS = 10
    for n in range(10):
        buckets.take(f"k{n}")
    now[0] = 2.0
    buckets.take("new")
    assert len(buckets._buckets) == 1


def test_backoff_doubles_after_the_free_failures() -> None:
    now = [0.0]
    backoff = Backoff(free=2, base=1.0, most=3.0, clock=lambda: now[0])
    backoff.failed("a")
    assert backoff.wait("a") == 0
    backoff.failed("a")
    assert backoff.wait("a") == 1.0
    backoff.failed("a")
    assert backoff.wait("a") == 2.0
    backoff.failed("a")
    assert backoff.wait("a") == 3.0  # at most
    backoff.succeeded("a")
    assert backoff.wait("a") == 0


def test_an_ipv6_client_counts_by_its_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("192.0.2.7") == "192.0.2.7" and client_key(None) == "unknown"


def test_limits_from_the_environment() -> None:
    limits = Limits.from_env(
        {
            "THREADLINE_MAX_BODY_BYTES": "2048",
            "THREADLINE_RATE_NEW_SESSIONS": "5/1m",
            "THREADLINE_RATE_MESSAGES": "off",
            "THREADLINE_RATE_SESSION_MESSAGES": "3/10",
            "THREADLINE_STREAMS_PER_SESSION": "2",
        }
    )
    assert limits.max_body_bytes == 2048 and limits.streams_per_session == 2
    assert limits.new_sessions == Rate(5, 60) and limits.messages is None
    assert limits.session_messages == Rate(3, 10)
    assert Limits.from_env({}) == Limits()
    for bad in ({"THREADLINE_RATE_MESSAGES": "lots"}, {"THREADLINE_MAX_BODY_BYTES": "-1"}):
        with pytest.raises(ConfigurationError):
            Limits.from_env(bad)
