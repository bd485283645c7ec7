"""The FastAPI application: REST under /v1, a WebSocket and an SSE stream per session, the
widget script and the demo page (routes/), behind the checks of security.py and access.py and
the limits of limits.py."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

import json

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response

from ..sessions import Sessions
from .access import RequestAccess
from .auth import Auth
from .dashboard import create_dashboard
from .health import NodeState, health_router
from .hub import Hub
from .limits import Limiter, Limits
from .routes.admin import admin_routes
from .routes.pages import page_routes
from .routes.sessions import session_routes
from .routes.streams import stream_routes
from .security import BodyLimit, HostCheck, Hosts, SecurityHeaders
from .throttle import Throttle


def create_app(
    sessions: Sessions,
    hub: Hub,
    auth: Auth,
    *,
    open_dashboard: bool = False,
    limits: Limits | None = None,
    hosts: Hosts | None = None,
    public_docs: bool = False,
    login_token: str | None = None,
    node: NodeState | None = None,
) -> FastAPI:
    """`open_dashboard`: serve the dashboard (and let any reader of it read sessions and
    costs) without a login. `limits`: sizes and rates (default `Limits()`). `hosts`: the Host
    names the server answers to (default: the loopback ones). `public_docs`: /docs and
    /openapi.json without the admin key (a server on loopback). `login_token`: logs a browser
    into the dashboard once (`/dashboard/login?token=`). The hub takes the events `sessions`
    writes from it directly."""
    hub.attach(sessions.events)
    limits = limits or Limits()
    hosts = hosts or Hosts()
    limiter = Limiter(limits)
    app = FastAPI(
        title="threadline", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.limiter = limiter
    app.state.node = node = node or NodeState()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # ASCII JSON: the input it quotes back may hold what UTF-8 cannot encode (a lone
        # surrogate), which FastAPI's own handler would turn into a 500.
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, default=str)
        return Response(body, status_code=422, media_type="application/json")

    dashboard = create_dashboard(
        sessions, auth, limiter, hosts, open_access=open_dashboard, login_token=login_token
    )
    app.include_router(dashboard)
    app.include_router(health_router(sessions, hub, auth, node, limiter))
    access = RequestAccess(sessions, auth, open_dashboard=open_dashboard)
    throttle = Throttle(limiter, auth)
    app.include_router(page_routes(sessions, access, public_docs=public_docs))
    app.include_router(session_routes(sessions, auth, access, throttle))
    app.include_router(stream_routes(sessions, hub, auth, access, throttle))
    app.include_router(admin_routes(sessions, access))
    # The last added runs first: headers on every answer, then the Host, then the size.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(auth.allowed_origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["authorization", "content-type", "last-event-id"],
    )
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    app.add_middleware(HostCheck, hosts=hosts)
    app.add_middleware(SecurityHeaders, embedders=auth.allowed_origins)
    return app
