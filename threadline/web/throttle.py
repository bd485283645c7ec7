"""The rates and stream counts the REST and SSE routes hold clients to (the limiter of
limits.py), refused with 429."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator

from fastapi import HTTPException, Request

from .auth import Auth
from .keys import ApiKey
from .limits import Limiter, client_key, retry_after


def client(request: Request) -> str:
    """The client's address as the limiter counts it (an IPv6 client by its /64)."""
    return client_key(request.client.host if request.client else None)


def too_many(wait: float, what: str) -> HTTPException:
    """429, closing the connection: a client that will not wait must connect again, at the
    rate its address may open connections (a flood on one kept-alive connection would cost
    the server a request parsed and routed each time)."""
    headers = {"retry-after": retry_after(wait), "connection": "close"}
    return HTTPException(429, f"too many {what}", headers=headers)


class Throttle:
    def __init__(self, limiter: Limiter, auth: Auth) -> None:
        self.limiter = limiter
        self.auth = auth

    def client_digest(self, request: Request) -> str:
        """The client's address as a keyed hash: it counts a client's spending without
        keeping where anyone connects from."""
        mac = hmac.new(self.auth.secret.encode(), client(request).encode(), hashlib.sha256)
        return mac.hexdigest()[:20]

    def new_session_allowed(self, request: Request, key: ApiKey | None, admin: bool) -> None:
        """A new session: within the rate of its API key, or of its client's address (the
        admin is not counted)."""
        if key is not None:
            wait = self.limiter.key_sessions.take(f"key:{key.id}")
        elif not admin:
            wait = self.limiter.new_session(client(request))
        else:
            wait = 0.0
        if wait:
            raise too_many(wait, "new sessions")

    def message_allowed(self, request: Request, session_id: str) -> None:
        """A message to the session: within the rates of its client and of the session."""
        if self.auth.is_admin(request.headers.get("authorization")):
            wait = self.limiter.session_messages.take(session_id)  # a backend: one address
        else:
            wait = self.limiter.message(client(request), session_id)
        if wait:
            raise too_many(wait, "messages")

    def stream_allowed(self, session_id: str) -> None:
        """Room for another stream of the session (its WebSockets count too)."""
        if not self.limiter.stream_room(session_id):
            raise too_many(5, "streams open on this session")

    def counted(self, session_id: str, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        """`stream`, counted as one of the session's while it is sent."""
        return _counted(self.limiter, session_id, stream)


async def _counted(
    limiter: Limiter, session_id: str, stream: AsyncIterator[str]
) -> AsyncIterator[str]:
    """(It ends at once if the session filled its streams since the route looked.)"""
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        if not limiter.open_stream(session_id):
            return
        try:
            async for piece in stream:
                yield piece
        finally:
            limiter.close_stream(session_id)
