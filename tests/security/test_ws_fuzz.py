"""A session's WebSocket (`/v1/sessions/{id}/ws`, docs/protocol.md) under a fuzzer, on the
server `threadline serve` configures: malformed JSON, frames that are no JSON object, binary
frames, invalid UTF-8, every field of every client frame kind of every wrong type, frames
over the size limits, a sender that trickles its bytes, and floods of frames.

Each bad frame gets what the protocol documents: an `error` frame (`bad_frame` for anything
that is not a JSON object of the right shape, the connection staying open), or, where the
WebSocket protocol itself says so, a close (1007 invalid UTF-8, 1009 a frame over the
server's `ws_max_size`). Throughout, a second, unrelated session on the same server chats
normally (a message, its whole answer), the server's memory stays bounded (it runs in this
process: its RSS is this process's), and the server answers afterwards.

The per-address rates are off: every client here is 127.0.0.1, so the fuzzer's floods would
count against the bystander's messages; the per-session rate (8 messages in 10 s) stays on.
Payloads come from `random.Random(SEED)`: a failure reproduces."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from tests.chat_server import frames_until
from threadline.web.limits import Limits
from threadline.web.ws import MAX_FRAME_BYTES

from .conftest import Serve, Server

SEED = 20240611
LIMITS = Limits(new_sessions=None, messages=None)
MAX_GROWTH = 150 * 2**20  # bytes of RSS
WS_MAX_SIZE = 1024 * 1024  # serve.uvicorn_config's `ws_max_size` (the body limit)
ERRORS = {"bad_frame", "unknown_type", "too_large", "rate_limited", "bad_message", "not_waiting"}
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Each client frame kind, valid, and what the server reads each field as.
FRAMES: dict[str, dict[str, Any]] = {
    "message.send": {"client_id": "c", "text": "Hi"},
    "resume": {"after_seq": 0, "turn_id": "t", "started": 1.0, "shown": 0},
    "tool.confirm": {"call_id": "call", "approve": True},
    "cancel": {},
    "ping": {},
}
MAX_SEQ = 2**63 - 1
WRONG: list[Any] = [
    None, True, False, 0, -1, 1.5, MAX_SEQ + 1, 10**30, "", "x", "\x00", "a\x00b", "\ud800",
    "\u202e", [], [1], {}, {"type": "ping"},
]  # fmt: skip


def well_typed(name: str, value: Any) -> bool:
    """Whether field `name` holds what the server reads it as (ws.py's checks)."""
    whole = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ
    if name in ("client_id", "text", "call_id"):
        return isinstance(value, str)
    if name == "turn_id":
        return value is None or isinstance(value, str)
    if name in ("after_seq", "shown"):
        return whole
    if name == "started":
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return value is None or (number and abs(value) < 1e15)
    if name == "approve":
        return isinstance(value, bool)
    raise AssertionError(name)


# -- the bystander ----------------------------------------------------------------------------


@dataclass
class Bystander:
    """A second session that chats over and over (within its session's rate) while the
    fuzzer works: every message gets its whole answer within 20 s."""

    server: Server
    answers: int = 0
    task: asyncio.Task[None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self.task = asyncio.create_task(self.chat())

    async def chat(self) -> None:
        session = await self.server.new_session()
        async with self.server.connect(session) as ws:
            await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
            n = 0
            while not self.stopping.is_set() or self.answers == 0:
                n += 1
                frame = {"type": "message.send", "client_id": f"b{n}", "text": f"Hello {n}"}
                await ws.send(json.dumps(frame))
                end = (await frames_until(ws, "message.end"))[-1]
                assert f"Hello {n}" in end["text"], end
                self.answers += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 1.5)  # 8 in 10 s at most

    async def stop(self) -> int:
        """Stop after the answer in progress; how many answers came."""
        assert self.task is not None
        self.stopping.set()
        await asyncio.wait_for(self.task, 30)
        return self.answers


@dataclass
class Arena:
    server: Server
    session: dict[str, Any]  # the fuzzed one
    bystander: Bystander
    rss: int

    async def still_fine(self) -> None:
        """The bystander chatted throughout, memory stayed bounded, the server answers."""
        assert await self.bystander.stop() >= 1
        grown = psutil.Process(os.getpid()).memory_info().rss - self.rss
        assert grown < MAX_GROWTH, f"RSS grew {grown / 2**20:.0f} MB"
        async with self.server.connect(self.session) as ws:  # the fuzzed session goes on
            await ws.send(json.dumps({"type": "ping"}))
            assert (await frames_until(ws, "pong"))[-1] == {"type": "pong"}


@pytest.fixture
async def arena(serve: Serve) -> AsyncIterator[Arena]:
    async with serve(limits=LIMITS) as server:
        bystander = Bystander(server)
        await bystander.start()
        rss = psutil.Process(os.getpid()).memory_info().rss
        yield Arena(server, await server.new_session(), bystander, rss)
        if not bystander.stopping.is_set():  # the test failed before its end
            bystander.stopping.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bystander.task or asyncio.sleep(0), 30)


# -- a raw client: any frame, any bytes, at any pace ------------------------------------------


class RawSocket:
    """A WebSocket client that sends what it is told (RFC 6455 framing, masked), not what a
    library would allow."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[RawSocket]:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        socket = cls(reader, writer)
        try:
            yield socket
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def send(
        self, payload: bytes, opcode: int = TEXT, *, fin: bool = True, trickle: float = 0.0
    ) -> None:
        """One frame; `trickle`: its bytes one at a time, that many seconds apart."""
        size = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if size < 126:
            head += bytes([0x80 | size])
        elif size < 2**16:
            head += bytes([0x80 | 126]) + struct.pack("!H", size)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", size)
        mask = os.urandom(4)
        key = (mask * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
        data = head + mask + masked
        if not trickle:
            self.writer.write(data)
            await self.writer.drain()
            return
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await self.writer.drain()
            await asyncio.sleep(trickle)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload); its keep-alive pings are
        answered on the way."""
        while True:
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            opcode, payload = first & 0x0F, await self.reader.readexactly(size)
            if opcode != PING:
                return opcode, payload
            await self.send(payload, PONG)

    async def until_pong(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The `error` frames before the next `pong` (the server's events are passed over)."""
        errors: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.frame()
                assert opcode == TEXT, (opcode, payload[:200])
                frame = json.loads(payload)
                if frame["type"] == "pong":
                    return errors
                if frame["type"] == "error":
                    errors.append(frame)

    async def answer_to(self, payload: bytes, opcode: int = TEXT) -> list[dict[str, Any]]:
        """The errors one frame earns; a ping after it shows the socket goes on."""
        await self.send(payload, opcode)
        await self.send(b'{"type": "ping"}')
        return await self.until_pong()

    async def close_code(self, timeout: float = 10.0) -> int:
        """The code of the server's close frame (other frames before it are passed over)."""
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.frame()
                if opcode == CLOSE:
                    code: int = struct.unpack("!H", payload[:2])[0]
                    return code


async def opened(socket: RawSocket) -> None:
    """Past the `session.state` every connection starts with."""
    opcode, payload = await socket.frame()
    assert opcode == TEXT and json.loads(payload)["type"] == "session.state", payload


# -- the fuzzing ------------------------------------------------------------------------------


def malformed(rng: random.Random) -> bytes:
    """Text that is not a JSON object with a `type`: cut frames, garbage, other JSON values,
    JSON nested deeper than a parser goes."""
    valid = json.dumps({"type": rng.choice(list(FRAMES)), **rng.choice(list(FRAMES.values()))})
    choices = [
        valid[: rng.randrange(1, len(valid))],  # cut short
        "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 200))),
        rng.choice(["null", "true", "1", '"ping"', "[]", '[{"type": "ping"}]', "{}", " "]),
        rng.choice(['{"type": null}', '{"type": 1}', '{"type": ["ping"]}', '{"type": {}}']),
        '{"type": "ping", "type": ' + rng.choice(["1", "null", "[]"]) + "}",  # the last wins
        "[" * (depth := rng.randrange(2_000, 16_000)) + "]" * depth,
        '{"a":' * (depth := rng.randrange(2_000, 5_000)) + "1" + "}" * depth,
        rng.choice(["NaN", "Infinity", "-Infinity", '{"type": NaN}']),
        "\ufeff" + valid,  # a byte order mark
    ]
    return rng.choice(choices).encode()


async def test_malformed_text_is_a_bad_frame_and_the_socket_goes_on(arena: Arena) -> None:
    rng = random.Random(SEED)
    async with RawSocket.open(arena.server.ws_url(arena.session)) as ws:
        await opened(ws)
        for _ in range(150):
            payload = malformed(rng)
            errors = await ws.answer_to(payload)
            assert [e["code"] for e in errors] == ["bad_frame"], (payload[:80], errors)
    await arena.still_fine()


async def test_every_field_of_every_frame_kind_of_every_wrong_type(arena: Arena) -> None:
    async with RawSocket.open(arena.server.ws_url(arena.session)) as ws:
        await opened(ws)
        for value in WRONG:  # the type itself
            errors = await ws.answer_to(json.dumps({"type": value}).encode())
            expected = "unknown_type" if isinstance(value, str) else "bad_frame"
            assert [e["code"] for e in errors] == [expected], (value, errors)
        for kind, valid in FRAMES.items():
            for name in valid:
                for value in WRONG:
                    frame = {"type": kind, **valid, name: value}
                    errors = await ws.answer_to(json.dumps(frame).encode())
                    codes = [e["code"] for e in errors]
                    if not well_typed(name, value):
                        assert codes == ["bad_frame"], (frame, errors)
                    else:  # of the right type: refused for what it says, or taken
                        assert len(codes) <= 1 and set(codes) <= ERRORS - {"bad_frame"}, (
                            frame,
                            errors,
                        )
    await arena.still_fine()


async def test_a_call_id_the_database_cannot_store_while_a_turn_runs(arena: Arena) -> None:
    """tool.confirm reaches the database only while a turn of the session runs."""
    async with RawSocket.open(arena.server.ws_url(arena.session)) as ws:
        await opened(ws)
        for n, call_id in enumerate(["\x00", "a\x00b", "\ud800", "x" * 10_000]):
            send = {"type": "message.send", "client_id": f"m{n}", "text": "a long story " * 50}
            await ws.send(json.dumps(send).encode())
            confirm = {"type": "tool.confirm", "call_id": call_id, "approve": True}
            errors = await ws.answer_to(json.dumps(confirm).encode())
            # (one it can store goes to the running turn's mailbox: no error, or not_waiting
            # once the turn is over)
            expected = [[]] if len(call_id) > 1000 else []
            assert [e["code"] for e in errors] in [["not_waiting"], *expected], errors
    await arena.still_fine()


async def test_binary_frames_are_bad_frames_and_the_socket_goes_on(arena: Arena) -> None:
    rng = random.Random(SEED)
    async with RawSocket.open(arena.server.ws_url(arena.session)) as ws:
        await opened(ws)
        payloads = [b'{"type": "ping"}', b"", b"\x00\xff", b"[" * 20_000]
        payloads += [rng.randbytes(rng.randrange(1, 5000)) for _ in range(20)]
        for payload in payloads:
            errors = await ws.answer_to(payload, BINARY)
            assert [e["code"] for e in errors] == ["bad_frame"], (payload[:20], errors)
    await arena.still_fine()


async def test_invalid_utf8_closes_the_socket_with_1007(arena: Arena) -> None:
    """RFC 6455 (8.1): a text frame that is not UTF-8 fails the connection."""
    rng = random.Random(SEED)
    for payload in [
        b"\xff",
        b'{"type": "ping", "x": "\xc3\x28"}',
        b"\xed\xa0\x80",
        rng.randbytes(64),
    ]:
        with contextlib.suppress(UnicodeDecodeError):
            payload.decode()
            continue  # (random bytes that happen to be UTF-8)
        async with RawSocket.open(arena.server.ws_url(arena.session)) as ws:
            await opened(ws)
            await ws.send(payload)
            assert await ws.close_code() == 1007, payload
    await arena.still_fine()


async def test_frames_over_the_limits(arena: Arena) -> None:
    """Over 32 KiB: `too_large`, the socket goes on (a message split into fragments too);
    over the server's `ws_max_size`: the WebSocket protocol closes it (1009)."""
    big = json.dumps({"type": "message.send", "client_id": "c", "text": "x" * MAX_FRAME_BYTES})
    async with RawSocket.open(arena.server.ws_url(arena.session)) as ws:
        await opened(ws)
        errors = await ws.answer_to(big.encode())
        assert [e["code"] for e in errors] == ["too_large"], errors
        third = len(big) // 3
        await ws.send(big[:third].encode(), fin=False)
        await ws.send(big[third : 2 * third].encode(), CONTINUATION, fin=False)
        errors = await ws.answer_to(big[2 * third :].encode(), CONTINUATION)
        assert [e["code"] for e in errors] == ["too_large"], errors
    async with RawSocket.open(arena.server.ws_url(arena.session)) as ws:
        await opened(ws)
        await ws.send(b"x" * (WS_MAX_SIZE + 1))
        assert await ws.close_code() == 1009
    await arena.still_fine()


@pytest.mark.slow  # it dawdles on purpose, 4 s
async def test_a_slow_sender_holds_nothing_up(arena: Arena) -> None:
    """A frame trickled a byte every 50 ms, and a message sent in fragments seconds apart,
    are read when complete; meanwhile the bystander chats (the fixture checks it)."""
    async with RawSocket.open(arena.server.ws_url(arena.session)) as ws:
        await opened(ws)
        before = arena.bystander.answers
        await ws.send(b'{"type": "ping", "slowly": true}', trickle=0.05)  # about 2 s
        assert await ws.until_pong() == []
        ping = b'{"type": "ping", "in": "three fragments"}'
        await ws.send(ping[:10], fin=False)
        await asyncio.sleep(1.0)
        await ws.send(ping[10:20], CONTINUATION, fin=False)
        await asyncio.sleep(1.0)
        await ws.send(ping[20:], CONTINUATION)
        assert await ws.until_pong() == []
        assert arena.bystander.answers > before  # it chatted while this one dawdled
    await arena.still_fine()


async def test_a_flood_of_frames(arena: Arena) -> None:
    """Many frames as fast as the socket takes them: every ping answered, every bad frame
    refused, the messages past the session's rate refused (`rate_limited`: 8 in 10 s)."""
    rng = random.Random(SEED)
    kinds = [rng.choice(["ping", "ping", "ping", "message.send", "bad"]) for _ in range(3000)]
    messages = [n for n, kind in enumerate(kinds) if kind == "message.send"][:40]
    kinds = ["ping" if kind == "message.send" and n not in messages else kind
             for n, kind in enumerate(kinds)]  # fmt: skip
    async with RawSocket.open(arena.server.ws_url(arena.session)) as ws:
        await opened(ws)

        async def read() -> list[str]:  # at once: a client that reads late stalls the server
            pongs, errors = 0, []
            while pongs < kinds.count("ping"):
                _, payload = await ws.frame()
                frame = json.loads(payload)
                pongs += frame["type"] == "pong"
                errors += [frame["code"]] if frame["type"] == "error" else []
            return errors

        reader = asyncio.create_task(read())
        started = asyncio.get_running_loop().time()
        for n, kind in enumerate(kinds):
            if kind == "message.send":
                frame = {"type": kind, "client_id": f"f{n}", "text": f"flood {n}"}
                await ws.send(json.dumps(frame).encode())
            else:
                await ws.send(malformed(rng) if kind == "bad" else b'{"type": "ping"}')
        errors = await asyncio.wait_for(reader, 60)
        took = asyncio.get_running_loop().time() - started
    assert errors.count("bad_frame") == kinds.count("bad"), errors
    taken = len(messages) - errors.count("rate_limited")
    assert 1 <= taken <= 8 + 1 + int(0.8 * took), (taken, took)  # the bucket, and its refill
    await arena.still_fine()


async def test_the_ai_sdk_socket_closes_on_what_names_no_request(arena: Arena) -> None:
    """The AI SDK's socket (aisdk_ws.py) cannot answer a frame that names no request: it
    closes with 4400, whatever the frame was; invalid UTF-8 closes it with 1007."""
    rng = random.Random(SEED)
    payloads = [(malformed(rng), TEXT) for _ in range(12)]
    payloads += [(rng.randbytes(100), BINARY), (b'{"type": "send"}', TEXT)]
    for payload, opcode in payloads:
        session = await arena.server.new_session()  # (a socket per session: none waits)
        async with RawSocket.open(
            arena.server.ws_url(session).replace("/ws?", "/ai-sdk/ws?")
        ) as ws:
            await ws.send(payload, opcode)
            assert await ws.close_code() in (4400, 1007), payload[:80]
    await arena.still_fine()
