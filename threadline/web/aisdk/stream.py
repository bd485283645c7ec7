"""A turn's UI message chunks as they are logged, and as Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from ...sessions import Sessions
from ..hub import Hub
from .chunks import Chunk, TurnStream, UIMessageStream

HEADERS = {"x-vercel-ai-ui-message-stream": "v1", "cache-control": "no-cache"}
READ_PAGE = 500  # events per read of the log
IDLE_S = 15.0  # a stream that waits this long for its turn sends a keep-alive


async def turn_chunks(
    sessions: Sessions, hub: Hub, session_id: str, stream: TurnStream
) -> AsyncGenerator[Chunk | None, None]:
    """The turn's UI message chunks until it ends, or waits for a tool call's approval;
    None after a while with nothing to send (a transport may send a keep-alive)."""
    ui = UIMessageStream(stream)
    for chunk in ui.start():
        yield chunk
    quiet_since = time.monotonic()
    events = _events(sessions, hub, session_id, stream.after)
    async with contextlib.aclosing(events):  # unsubscribes at once when the stream stops
        async for frame in events:
            if frame is not None:
                for chunk in ui.feed(frame):
                    yield chunk
                quiet_since = time.monotonic()
            elif ui.waiting is not None:  # the log has all there is: the approval is to come
                for chunk in ui.pause():
                    yield chunk
            elif time.monotonic() - quiet_since >= IDLE_S:
                yield None
                quiet_since = time.monotonic()
            if ui.over:
                return


async def _events(
    sessions: Sessions, hub: Hub, session_id: str, after: int
) -> AsyncGenerator[dict[str, Any] | None, None]:
    """The session's logged events after `after`, as they come (from the hub; from the log
    after a gap or a quiet spell), and None each time it has given all there is so far."""
    sub = hub.subscribe(session_id)
    cursor, read_log = after, True
    try:
        while True:
            sub.wake.clear()
            if read_log:
                events = await sessions.read(session_id, cursor, READ_PAGE)
                for event in events:
                    cursor = event.seq
                    yield event.frame()
                read_log = len(events) == READ_PAGE
                if read_log:
                    continue
            taken, gap = sub.take(cursor)
            for entry in taken:
                cursor = entry.seq
                if entry.text is not None:  # always: `take` stops before one without
                    yield json.loads(entry.text)
            if gap or taken:
                read_log = gap
                continue
            yield None
            try:
                await asyncio.wait_for(sub.wake.wait(), IDLE_S)
            except TimeoutError:
                sub.stale = True
            if sub.stale:  # nothing came for a while: read the log, in case a notice was lost
                sub.stale, read_log = False, True
    finally:
        hub.unsubscribe(session_id, sub)


async def sse(chunks: AsyncGenerator[Chunk | None, None]) -> AsyncIterator[str]:
    """Chunks as Server-Sent Events, ending in `[DONE]`; a comment keeps an idle stream."""
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            yield ": keep-alive\n\n" if chunk is None else f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"
