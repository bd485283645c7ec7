"""The FastAPI application: REST under /v1, a WebSocket and an SSE stream per session, the
widget script and the demo page, behind the checks of security.py and the limits of
limits.py."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

import asyncio
import contextlib
import functools
import gzip
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, WebSocket
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.templating import Jinja2Templates
from pydantic import AfterValidator, BaseModel, Field

from ..db import audit
from ..errors import ConfigurationError, PayloadTooLarge
from ..ledger import Ledger
from ..sessions import Sessions, UnknownSession
from ..sessions.access import Access
from ..sessions.events import Committed
from ..sessions.text import storable
from . import aisdk, aisdk_ws
from .answers import event_stream, refusals
from .auth import Auth, AuthError
from .dashboard import COOKIE, create_dashboard
from .handshake import admitted
from .health import NodeState, health_router
from .hub import Hub
from .keys import KEY_PREFIX, ApiKey, ApiKeys
from .limits import Limiter, Limits, client_key, retry_after
from .security import BodyLimit, HostCheck, Hosts, SecurityHeaders, docs_policy
from .ws import MAX_SEQ, Connection

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def _storable(text: str) -> str:
    """Text PostgreSQL can store: a NUL is refused here (422, naming the field), not failed
    inside a query (500)."""
    if not storable(text):
        raise ValueError("contains a NUL character or an unpaired surrogate, which is not text")
    return text


StoredText = Annotated[str, AfterValidator(_storable)]


class NewKey(BaseModel):
    tenant: StoredText = Field(min_length=1, max_length=200)
    name: StoredText = Field(default="", max_length=200)


class NewSession(BaseModel):
    agent: str = Field(min_length=1, max_length=100)
    user: StoredText | None = Field(default=None, max_length=200)
    tenant: StoredText | None = Field(default=None, max_length=200)


class OperatorReply(BaseModel):
    text: str | None = Field(default=None, max_length=8000)
    operator: str = Field(default="operator", max_length=100)
    state: str | None = Field(default=None, max_length=100)


class Rating(BaseModel):
    turn_id: StoredText = Field(min_length=1, max_length=200)
    rating: str | None = Field(default=None, pattern="^(up|down)$")  # None takes it back
    comment: str | None = Field(default=None, max_length=2000)


class SessionChange(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class NewMessage(BaseModel):
    client_id: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1)


@functools.cache
def widget_bundle() -> str:
    """The widget (static/widget.js, its renderer markdown.js and its styles widget.css) with
    the libraries it uses (static/vendor: marked, highlight.js), in one function scope: one
    script tag, and nothing added to the host page's globals (marked's UMD build sees
    `module`; highlight.js's build is a `var hljs` in that scope)."""
    static = HERE / "static"

    def read(name: str) -> str:
        return (static / name).read_text(encoding="utf-8")

    return (
        "(function () {\nvar module = { exports: {} }, exports = module.exports;\n"
        f"{read('vendor/marked.min.js')}\nvar marked = module.exports;\n"
        f"{read('vendor/highlight.core.js')}\n"
        f"var WIDGET_CSS = {json.dumps(read('widget.css'))};\n"
        f"{read('markdown.js')}\n{read('widget.js')}\n}})();\n"
    )


@functools.cache
def widget_payload() -> tuple[bytes, bytes, str]:
    """The widget bundle as sent: (plain, gzipped, its ETag)."""
    plain = widget_bundle().encode()
    return plain, gzip.compress(plain, 9, mtime=0), f'"{hashlib.sha256(plain).hexdigest()[:20]}"'


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

    def is_admin(request: Request) -> bool:
        """The admin key as a bearer; to read (GET), also the dashboard's cookie (its export
        link) or an open dashboard. A cookie never changes anything: no cross-site request
        can use it to."""
        if auth.is_admin(request.headers.get("authorization")):
            return True
        return request.method in ("GET", "HEAD") and (
            open_dashboard or auth.is_admin_cookie(request.cookies.get(COOKIE))
        )

    async def api_key(request: Request) -> ApiKey | None:
        """The tenant API key the request bears, if it bears one; a wrong or revoked one is
        refused (401) rather than taken for no key. Verified once a request (the access
        check and the audit log both ask)."""
        scheme, _, bearer = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not bearer.startswith(KEY_PREFIX):
            return None
        found: ApiKey | None = getattr(request.state, "api_key", None)
        if found is None:
            found = await ApiKeys(sessions.engine.pool).verify(bearer)
            if found is None:
                raise HTTPException(401, "the API key is not valid or was revoked")
            request.state.api_key = found
        return found

    async def actor(request: Request) -> str | None:
        """Who a request acts as, for the audit log: the admin (its key, or the dashboard's
        cookie), a tenant's API key (by its prefix), or None (a session's own token)."""
        if auth.is_admin(request.headers.get("authorization")):
            return "admin"
        if is_admin(request):
            return "dashboard"
        key = await api_key(request)
        return f"key:{key.prefix}" if key is not None else None

    async def audited(request: Request, action: str, target: str = "", **detail: Any) -> None:
        """Record the action if the admin or a tenant's backend did it (a session's own
        user acting on it is not audited)."""
        who = await actor(request)
        if who is not None:
            address = request.client.host if request.client else None
            await audit.record(sessions.engine.pool, who, action, target, detail, address)

    async def access_of(session_id: str) -> Access:
        """The session's tenant and token generation (404 if there is no such session)."""
        try:
            return await sessions.access(_lookup(session_id))
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None

    async def generation_of(session_id: str) -> int:
        return (await access_of(session_id)).token_generation

    async def key_access(request: Request, session_id: str) -> bool:
        """The request bears an API key of the session's tenant (403: another tenant's)."""
        key = await api_key(request)
        if key is None:
            return False
        if (await access_of(session_id)).tenant != key.tenant:
            raise HTTPException(403, "the API key is another tenant's")
        return True

    async def check_token(session_id: str, token: str | None, *, refreshing: bool = False) -> int:
        """A token of this session, of its current generation (expired for less than the
        refresh window when `refreshing`); that generation. The signature is checked before
        any query."""
        try:
            generation = auth.verify(token, session_id, refreshing=refreshing)
            auth.check_generation(generation, await generation_of(session_id))
        except AuthError as exc:
            raise HTTPException(401 if exc.code != "forbidden" else 403, str(exc)) from None
        return generation

    async def session_access(
        request: Request,
        session_id: str,
        authorization: Annotated[str | None, Header()] = None,
        token: Annotated[str | None, Query()] = None,
    ) -> str:
        """The admin, an API key of the session's tenant, or a token of the session; each
        way, a session that exists (404: the admin's `/events` would wait forever on none)."""
        if is_admin(request):
            await generation_of(session_id)
        elif not await key_access(request, session_id):
            bearer = authorization.partition(" ")[2] if authorization else None
            await check_token(session_id, token or bearer)
        return _lookup(session_id)

    async def backend_access(
        request: Request, session_id: str, authorization: Annotated[str | None, Header()] = None
    ) -> str:
        """The admin or an API key of the session's tenant: a token never suffices."""
        if not auth.is_admin(authorization) and not await key_access(request, session_id):
            raise HTTPException(
                401, "the admin key or an API key of the session's tenant is required"
            )
        return _lookup(session_id)

    def admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
        if not is_admin(request):
            raise HTTPException(401, "the admin API key is required")

    def client(request: Request) -> str:
        return client_key(request.client.host if request.client else None)

    def client_digest(request: Request) -> str:
        """The client's address (an IPv6 client by its /64) as a keyed hash: it counts a
        client's spending without keeping where anyone connects from."""
        mac = hmac.new(auth.secret.encode(), client(request).encode(), hashlib.sha256)
        return mac.hexdigest()[:20]

    def too_many(wait: float, what: str) -> HTTPException:
        """429, closing the connection: a client that will not wait must connect again, at
        the rate its address may open connections (a flood on one kept-alive connection
        would cost the server a request parsed and routed each time)."""
        headers = {"retry-after": retry_after(wait), "connection": "close"}
        return HTTPException(429, f"too many {what}", headers=headers)

    def stream_allowed(session_id: str) -> None:
        """Room for another stream of the session (its WebSockets count too)."""
        if not limiter.stream_room(session_id):
            raise too_many(5, "streams open on this session")

    def counted(session_id: str, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        return _counted(limiter, session_id, stream)

    def message_allowed(request: Request, session_id: str) -> None:
        """A message to the session: within the rates of its client and of the session."""
        if auth.is_admin(request.headers.get("authorization")):
            wait = limiter.session_messages.take(session_id)  # a backend: one address
        else:
            wait = limiter.message(client(request), session_id)
        if wait:
            raise too_many(wait, "messages")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_schema(request: Request) -> Response:
        if not (public_docs or is_admin(request)):
            raise HTTPException(401, "the admin API key is required")
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request) -> Response:
        if not (public_docs or is_admin(request)):
            raise HTTPException(401, "the admin API key is required")
        nonce = request.state.csp_nonce
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="threadline API")
        html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
        return HTMLResponse(html, headers={"content-security-policy": docs_policy(nonce)})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request) -> Any:
        agents = [{"name": a.name, "title": a.title or a.name} for a in sessions.agents.values()]
        return templates.TemplateResponse(request, "index.html", {"agents": agents})

    @app.get("/widget.js", include_in_schema=False)
    async def widget(
        accept_encoding: Annotated[str, Header()] = "",
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        # 170 KB as written, 53 KB gzipped; revalidated by its ETag (a new release changes it).
        plain, packed, etag = widget_payload()
        headers = {"etag": etag, "cache-control": "public, max-age=300", "vary": "accept-encoding"}
        if if_none_match == etag:
            return Response(status_code=304, headers=headers)
        if "gzip" in accept_encoding:
            headers["content-encoding"] = "gzip"
            return Response(packed, media_type="text/javascript", headers=headers)
        return Response(plain, media_type="text/javascript", headers=headers)

    @app.get("/chat/{agent}", response_class=HTMLResponse, include_in_schema=False)
    async def full_page_chat(request: Request, agent: str) -> Any:
        """One agent's chat filling the page, with this browser's conversations beside it."""
        found = sessions.agents.get(agent)
        if found is None:
            raise HTTPException(404, f"no agent {agent!r}")
        context = {
            "agent": found.name,
            "title": found.title or found.name,
            "greeting": found.greeting or "",
        }
        return templates.TemplateResponse(request, "chat.html", context)

    @app.get("/chat-page.js", include_in_schema=False)
    async def chat_page_script() -> Response:
        script = (HERE / "static" / "chat-page.js").read_text(encoding="utf-8")
        return Response(script, media_type="text/javascript")

    @app.post("/v1/sessions", status_code=201, responses=refusals(400, 401, 403, 404, 413, 429))
    async def create_session(body: NewSession, request: Request) -> dict[str, Any]:
        origin, host = request.headers.get("origin"), request.headers.get("host")
        if not auth.origin_allowed(origin, host):
            raise HTTPException(403, f"origin {origin} is not allowed")
        admin = auth.is_admin(request.headers.get("authorization"))
        key = None if admin else await api_key(request)
        tenant, user = body.tenant, body.user
        if key is not None:
            if tenant not in (None, key.tenant):
                raise HTTPException(403, f"this API key creates sessions of {key.tenant!r}")
            tenant = key.tenant
            wait = limiter.key_sessions.take(f"key:{key.id}")
        elif not admin:
            if tenant is not None or user is not None:
                raise HTTPException(
                    403, "only a backend with an API key names a session's tenant or user"
                )
            wait = limiter.new_session(client(request))
        else:
            wait = 0.0
        if wait:
            raise too_many(wait, "new sessions")
        # Where an anonymous session came from, as an opaque key: for an agent's per-client
        # share of its daily budget (Budget(per_client_daily=...)).
        origin_key = None if admin or key is not None else client_digest(request)
        try:
            info = await sessions.create(body.agent, tenant=tenant, user=user, client=origin_key)
        except ConfigurationError as exc:
            raise HTTPException(404, str(exc)) from None
        return {
            "session_id": info.id,
            "token": auth.issue(info.id),  # a new session's tokens are of generation 0
            "agent": info.agent,
            "state": info.state,
        }

    @app.get("/v1/sessions/{session_id}", responses=refusals(401, 403, 404))
    async def get_session(session_id: Annotated[str, Depends(session_access)]) -> Any:
        try:
            info = await sessions.get(session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        return {
            "session_id": info.id,
            "agent": info.agent,
            "title": info.title,
            "state": info.state,
            "status": info.status,
            "data": info.data,
            "last_seq": info.event_seq,
            "created_at": info.created_at.isoformat(),
            "updated_at": info.updated_at.isoformat(),
        }

    @app.patch("/v1/sessions/{session_id}", responses=refusals(400, 401, 403, 404, 413, 422))
    async def change_session(
        body: SessionChange, session_id: Annotated[str, Depends(session_access)]
    ) -> Any:
        try:
            await sessions.rename(session_id, body.title)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"ok": True}

    @app.delete("/v1/sessions/{session_id}", status_code=204, responses=refusals(401, 403, 404))
    async def delete_session(
        request: Request, session_id: Annotated[str, Depends(session_access)]
    ) -> Response:
        try:
            await sessions.delete(session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        await audited(request, "session.deleted", f"session:{session_id}")
        return Response(status_code=204)

    @app.post(
        "/v1/sessions/{session_id}/feedback",
        responses=refusals(400, 401, 403, 404, 413, 422),
    )
    async def rate(body: Rating, session_id: Annotated[str, Depends(session_access)]) -> Any:
        try:
            await sessions.rate(session_id, body.turn_id, body.rating, body.comment)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"ok": True}

    @app.post("/v1/sessions/{session_id}/token", responses=refusals(401, 403, 404))
    async def refresh_token(
        request: Request,
        session_id: str,
        authorization: Annotated[str | None, Header()] = None,
        token: Annotated[str | None, Query()] = None,
    ) -> Any:
        """A fresh token: for the session's token (one expired for less than the refresh
        window will do: a widget opened again after days), the admin or its tenant's key."""
        if auth.is_admin(authorization) or await key_access(request, session_id):
            generation = await generation_of(session_id)
            await audited(request, "session.token_issued", f"session:{session_id}")
        else:
            bearer = authorization.partition(" ")[2] if authorization else None
            generation = await check_token(session_id, token or bearer, refreshing=True)
        return {"token": auth.issue(session_id, generation=generation)}

    @app.post("/v1/sessions/{session_id}/revoke", responses=refusals(401, 403, 404))
    async def revoke_tokens(
        request: Request, session_id: Annotated[str, Depends(backend_access)]
    ) -> Any:
        """Refuse every token issued for the session so far (its open connections close);
        the answer holds a token of the new generation for whoever should keep the session."""
        try:
            generation = await sessions.revoke_tokens(session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        await sessions.events.append(session_id, "session.revoked", {"generation": generation})
        await audited(
            request, "session.tokens_revoked", f"session:{session_id}", generation=generation
        )
        return {"token": auth.issue(session_id, generation=generation)}

    @app.get("/v1/sessions/{session_id}/messages", responses=refusals(401, 403, 404))
    async def history(request: Request, session_id: Annotated[str, Depends(session_access)]) -> Any:
        try:
            messages = await sessions.history(session_id)
            rated = await sessions.ratings(session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        await audited(request, "session.read", f"session:{session_id}", what="messages")
        return [
            {**m.to_json(), "rating": rated[m.turn_id]} if m.turn_id in rated else m.to_json()
            for m in messages
        ]

    @app.post(
        "/v1/sessions/{session_id}/messages",
        status_code=202,
        responses=refusals(400, 401, 403, 404, 413, 422, 429),
    )
    async def post_message(
        request: Request, body: NewMessage, session_id: Annotated[str, Depends(session_access)]
    ) -> Any:
        message_allowed(request, session_id)
        try:
            seq, created = await sessions.send(session_id, body.text, body.client_id)
        except PayloadTooLarge as exc:
            raise HTTPException(413, str(exc)) from None
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"seq": seq, "created": created}

    @app.post("/v1/sessions/{session_id}/cancel", responses=refusals(401, 403, 404))
    async def cancel(session_id: Annotated[str, Depends(session_access)]) -> Any:
        return {"cancelled": await sessions.cancel(session_id)}

    @app.get(
        "/v1/sessions/{session_id}/events",
        response_class=StreamingResponse,
        responses={
            **event_stream("The session's events, then each as it is logged"),
            **refusals(401, 403, 404, 429),
        },
    )
    async def sse(
        session_id: Annotated[str, Depends(session_access)],
        after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        start = after
        if last_event_id and last_event_id.strip():
            start = _last_event_id(last_event_id)
        stream_allowed(session_id)
        return StreamingResponse(
            counted(session_id, _sse_stream(sessions, hub, session_id, start)),
            media_type="text/event-stream",
        )

    @app.get(
        "/v1/sessions/{session_id}/export",
        responses={200: {"content": {"text/markdown": {}}}, **refusals(401, 403, 404)},
    )
    async def export(
        request: Request,
        session_id: Annotated[str, Depends(session_access)],
        format: Literal["json", "md"] = "json",
    ) -> Any:
        await audited(request, "session.read", f"session:{session_id}", what=f"export {format}")
        try:
            if format == "md":
                text = await sessions.export_markdown(session_id)
                return PlainTextResponse(text, media_type="text/markdown")
            return await sessions.export(session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post(
        "/v1/sessions/{session_id}/operator",
        dependencies=[Depends(admin)],
        responses=refusals(400, 401, 404, 413, 422),
    )
    async def operator(request: Request, session_id: str, body: OperatorReply) -> Any:
        _lookup(session_id)
        target = f"session:{session_id}"
        try:
            if body.text:
                await sessions.operator_reply(session_id, body.text, body.operator)
                await audited(
                    request,
                    "operator.replied",
                    target,
                    operator=body.operator,
                    chars=len(body.text),
                )
            if body.state:
                await sessions.set_state(session_id, body.state)
                await audited(request, "session.state_set", target, state=body.state)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"ok": True}

    @app.post(
        "/v1/keys",
        status_code=201,
        dependencies=[Depends(admin)],
        responses=refusals(400, 401, 413, 422),
    )
    async def create_key(request: Request, body: NewKey) -> Any:
        """A tenant's API key, shown this once (the server keeps its hash)."""
        try:
            record, key = await ApiKeys(sessions.engine.pool).create(body.tenant, body.name)
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        await audited(request, "key.created", f"key:{record.prefix}", tenant=record.tenant)
        return {**record.to_json(), "key": key}

    @app.get("/v1/keys", dependencies=[Depends(admin)], responses=refusals(401))
    async def list_keys(tenant: Annotated[StoredText | None, Query(max_length=200)] = None) -> Any:
        return [k.to_json() for k in await ApiKeys(sessions.engine.pool).list(tenant)]

    @app.delete("/v1/keys/{key}", dependencies=[Depends(admin)], responses=refusals(401, 404))
    async def revoke_key(
        request: Request, key: Annotated[StoredText, PathParam(max_length=100)]
    ) -> Any:
        """Revoke a key by its id or prefix: it is refused from now on."""
        revoked = await ApiKeys(sessions.engine.pool).revoke(key)
        if revoked is None:
            raise HTTPException(404, f"no live key {key!r}")
        await audited(request, "key.revoked", f"key:{revoked.prefix}", tenant=revoked.tenant)
        return revoked.to_json()

    @app.get("/v1/sessions", dependencies=[Depends(admin)], responses=refusals(401))
    async def list_sessions(
        status: Annotated[StoredText | None, Query(max_length=50)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        return [
            {
                "session_id": s.id,
                "agent": s.agent,
                "state": s.state,
                "status": s.status,
                "tenant": s.tenant,
                "updated_at": s.updated_at.isoformat(),
            }
            for s in await sessions.list_sessions(status=status, limit=limit)
        ]

    @app.get("/v1/audit", dependencies=[Depends(admin)], responses=refusals(401))
    async def audit_log(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        action: Annotated[StoredText | None, Query(max_length=100)] = None,
        target: Annotated[StoredText | None, Query(max_length=300)] = None,
        actor: Annotated[StoredText | None, Query(max_length=200)] = None,
    ) -> Any:
        """What the admin, operators and tenants' backends did, latest first."""
        found = await audit.recent(
            sessions.engine.pool, limit=limit, action=action, target=target, actor=actor
        )
        return [entry.to_json() for entry in found]

    @app.post(
        "/v1/sessions/{session_id}/ai-sdk",
        response_class=StreamingResponse,
        responses={
            **event_stream("The turn as the AI SDK's UI message stream"),
            **refusals(401, 403, 404, 413, 422, 429),
        },
        openapi_extra={"requestBody": aisdk.REQUEST_BODY},
    )
    async def ai_sdk_chat(
        request: Request, session_id: Annotated[str, Depends(session_access)]
    ) -> StreamingResponse:
        """A turn for the Vercel AI SDK's `useChat`: its request body in, the UI message
        stream protocol out (see aisdk.py)."""
        message_allowed(request, session_id)
        stream_allowed(session_id)
        try:
            stream = await aisdk.submit(sessions, session_id, await request.json())
        # Not JSON (or nested deeper than the parser goes), no user message:
        except (ValueError, RecursionError) as exc:
            raise HTTPException(422, str(exc)) from None
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        except PayloadTooLarge as exc:
            raise HTTPException(413, str(exc)) from None
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        chunks = aisdk.turn_chunks(sessions, hub, session_id, stream)
        return StreamingResponse(
            counted(session_id, aisdk.sse(chunks)),
            media_type="text/event-stream",
            headers=aisdk.HEADERS,
        )

    # `DefaultChatTransport.reconnectToStream` asks `${api}/${chatId}/stream`.
    @app.get(
        "/v1/sessions/{session_id}/ai-sdk/stream",
        response_class=StreamingResponse,
        responses={
            **event_stream("The active turn's UI message stream from its start"),
            204: {"description": "No turn is active"},
            **refusals(401, 403, 404, 429),
        },
    )
    @app.get("/v1/sessions/{session_id}/ai-sdk/{chat_id}/stream", include_in_schema=False)
    async def ai_sdk_resume(session_id: Annotated[str, Depends(session_access)]) -> Response:
        """The active turn's UI message stream from its start (204: no turn is active)."""
        stream_allowed(session_id)
        try:
            stream = await aisdk.active_turn(sessions, session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        if stream is None:
            return Response(status_code=204)
        chunks = aisdk.turn_chunks(sessions, hub, session_id, stream)
        return StreamingResponse(
            counted(session_id, aisdk.sse(chunks)),
            media_type="text/event-stream",
            headers=aisdk.HEADERS,
        )

    @app.websocket("/v1/sessions/{session_id}/ai-sdk/ws")
    async def ai_sdk_websocket(ws: WebSocket, session_id: str, token: str | None = None) -> None:
        """`WebSocketChatTransport`'s protocol (see aisdk_ws.py)."""
        await aisdk_ws.serve(ws, sessions, hub, auth, limiter, session_id, token)

    @app.get("/v1/costs", dependencies=[Depends(admin)], responses=refusals(401, 422))
    async def costs(by: str = "model", tenant: StoredText | None = None) -> Any:
        try:
            rows = await Ledger(sessions.engine.pool).report(by, tenant=tenant)
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        return [
            {**r.__dict__, "cost_usd": str(r.cost_usd), "saved_usd": str(r.saved_usd)} for r in rows
        ]

    @app.websocket("/v1/sessions/{session_id}/ws")
    async def websocket(ws: WebSocket, session_id: str, token: str | None = None) -> None:
        async with admitted(ws, auth, sessions, limiter, session_id, token) as admit:
            if admit:
                await Connection(ws, sessions, hub, session_id, limiter, admit.generation).run()

    return app


SSE_KEEP_ALIVE_S = 15.0


def _lookup(session_id: str) -> str:
    """A session id to look up: one PostgreSQL cannot compare (a NUL) names no session."""
    if not storable(session_id):
        raise HTTPException(404, f"no session with id {session_id!r}")
    return session_id


def _last_event_id(value: str) -> int:
    """The seq a reconnecting EventSource sends back: one this server gave, so a whole
    number in a bigint's range; anything else is refused (422), never read as one."""
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= MAX_SEQ):
        detail = [
            {
                "loc": ["header", "last-event-id"],
                "msg": f"a whole number 0..{MAX_SEQ}",
                "type": "value_error",
            }
        ]
        raise HTTPException(422, detail)
    return int(value)


async def _counted(
    limiter: Limiter, session_id: str, stream: AsyncIterator[str]
) -> AsyncIterator[str]:
    """`stream`, counted as one of the session's while it is sent (it ends at once if the
    session filled its streams since the route looked)."""
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        if not limiter.open_stream(session_id):
            return
        try:
            async for piece in stream:
                yield piece
        finally:
            limiter.close_stream(session_id)


async def _sse_stream(
    sessions: Sessions, hub: Hub, session_id: str, after: int
) -> AsyncIterator[str]:
    sub = hub.subscribe(session_id)
    cursor = after
    try:
        while True:
            events = [
                Committed(session_id, e.seq, e.type, json.dumps(e.frame()))
                for e in await sessions.read(session_id, cursor)
            ]
            while events:
                for event in events:
                    cursor = event.seq
                    yield f"id: {cursor}\nevent: {event.type}\ndata: {event.text}\n\n"
                events, gap = sub.take(cursor)
                if gap:
                    break
            sub.wake.clear()
            try:
                await asyncio.wait_for(sub.wake.wait(), SSE_KEEP_ALIVE_S)
            except TimeoutError:  # idle: a comment keeps proxies from closing the stream
                yield ": keep-alive\n\n"
    finally:
        hub.unsubscribe(session_id, sub)
