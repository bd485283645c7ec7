"""The web layer: REST, WebSocket and SSE per session, the widget, the demo page."""

from .app import create_app
from .auth import Auth, AuthError
from .hub import Hub
from .serve import serve

__all__ = ["Auth", "AuthError", "Hub", "create_app", "serve"]
