"""A session's WebSocket: the protocol (connection.py), the events sent to its client in
order and once each (forward.py, answer.py), and the writes to the socket (writer.py)."""

from .connection import MAX_FRAME_BYTES, MAX_SEQ, Connection

__all__ = ["MAX_FRAME_BYTES", "MAX_SEQ", "Connection"]
