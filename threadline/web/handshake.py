"""The check every session WebSocket passes before it is served."""

from __future__ import annotations

from starlette.websockets import WebSocket

from ..sessions import Sessions, UnknownSession
from .auth import Auth, AuthError


async def admit(
    ws: WebSocket, auth: Auth, sessions: Sessions, session_id: str, token: str | None
) -> bool:
    """Accept the connection if its origin is allowed and its token is the session's; else
    accept it and close it at once with a code a browser can read (4401 bad or expired
    token, 4403 wrong session or origin, 4404 no such session): a refused handshake would
    only show the page a generic failure. Whether it was admitted."""
    refusal: tuple[int, str] | None = None
    if not auth.origin_allowed(ws.headers.get("origin"), ws.headers.get("host")):
        refusal = (4403, "origin not allowed")
    else:
        try:
            auth.verify(token, session_id)
            await sessions.get(session_id)
        except AuthError as exc:
            refusal = (4401 if exc.code != "forbidden" else 4403, str(exc))
        except UnknownSession:
            refusal = (4404, "no such session")
    await ws.accept()
    if refusal is not None:
        await ws.close(code=refusal[0], reason=refusal[1])
        return False
    return True
