"""The check every session WebSocket passes before it is served."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.websockets import WebSocket

from ..sessions import Sessions, UnknownSession
from .auth import Auth, AuthError
from .limits import Limiter

REVOKED = "session.revoked"  # {generation}: tokens of older generations are refused


def revokes(frame_text: str, generation: int) -> bool:
    """Whether a `session.revoked` frame refuses tokens of `generation`."""
    moved_to = json.loads(frame_text).get("generation")
    return isinstance(moved_to, int) and moved_to > generation


@dataclass(frozen=True)
class Admitted:
    generation: int  # the token generation the connection was opened with


@contextlib.asynccontextmanager
async def admitted(
    ws: WebSocket,
    auth: Auth,
    sessions: Sessions,
    limiter: Limiter,
    session_id: str,
    token: str | None,
) -> AsyncIterator[Admitted | None]:
    """Accept the connection if its origin is allowed, its token is the session's and the
    session has fewer WebSockets than it may; else accept it and close it at once with a code
    a browser can read (4401 bad, expired or revoked token, 4403 wrong session or origin, 4404
    no such session, 4429 too many connections to the session): a refused handshake would only
    show the page a generic failure. Yields the admission (None: refused); it counts for the
    session until the block ends."""
    refusal: tuple[int, str] | None = None
    generation = 0
    if not auth.origin_allowed(ws.headers.get("origin"), ws.headers.get("host")):
        refusal = (4403, "origin not allowed")
    else:
        try:
            generation = auth.verify(token, session_id)
            auth.check_generation(generation, (await sessions.access(session_id)).token_generation)
        except AuthError as exc:
            refusal = (4401 if exc.code != "forbidden" else 4403, str(exc))
        except UnknownSession:
            refusal = (4404, "no such session")
    if refusal is None and not limiter.open_stream(session_id):
        refusal = (4429, "too many connections to this session")
    try:
        await ws.accept()
        if refusal is not None:
            await ws.close(code=refusal[0], reason=refusal[1])
        yield Admitted(generation) if refusal is None else None
    finally:
        if refusal is None:
            limiter.close_stream(session_id)
