"""Durable conversation sessions: state, messages, turns and the event log."""

from . import feedback
from .events import EventLog, SessionEvent
from .runtime import TURN_QUEUE, Sessions
from .store import SessionInfo, StoredMessage, UnknownSession

__all__ = [
    "TURN_QUEUE",
    "EventLog",
    "SessionEvent",
    "SessionInfo",
    "Sessions",
    "StoredMessage",
    "UnknownSession",
    "feedback",
]
