"""The Vercel AI SDK's UI message stream protocol (`ai` 5 and later), so apps built with
`useChat` talk to a session without an adapter. One turn is one assistant message: its session
events become UI message chunks in one place (chunks.py: `UIMessageStream`), and both
transports send them: SSE for `DefaultChatTransport` (routes/streams.py) and a WebSocket for
`WebSocketChatTransport` (aisdk_ws.py). A request is acted on in request.py. Every stream is
read from the session's event log (stream.py), so a client that dropped gets the active turn's
stream again, from its start (docs/protocol.md, "Vercel AI SDK")."""

from .chunks import DECLINED, NOTICES, TURN_ENDS, Chunk, TurnStream, UIMessageStream, metadata
from .request import REQUEST_BODY, active_turn, client_id, last_user_message, submit
from .stream import HEADERS, IDLE_S, READ_PAGE, sse, turn_chunks

__all__ = [
    "DECLINED",
    "HEADERS",
    "IDLE_S",
    "NOTICES",
    "READ_PAGE",
    "REQUEST_BODY",
    "TURN_ENDS",
    "Chunk",
    "TurnStream",
    "UIMessageStream",
    "active_turn",
    "client_id",
    "last_user_message",
    "metadata",
    "sse",
    "submit",
    "turn_chunks",
]
