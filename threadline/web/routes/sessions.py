"""A session's REST API: create, read, rename and delete it; its messages, feedback, export
and tokens."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response

from ...errors import ConfigurationError
from ...sessions import Sessions, UnknownSession
from ..access import RequestAccess
from ..answers import message_refusals, refusals
from ..auth import Auth
from ..bodies import NewMessage, NewSession, Rating, SessionChange
from ..throttle import Throttle


def session_routes(
    sessions: Sessions, auth: Auth, access: RequestAccess, throttle: Throttle
) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/sessions", status_code=201, responses=refusals(400, 401, 403, 404, 413, 429))
    async def create_session(body: NewSession, request: Request) -> dict[str, Any]:
        origin, host = request.headers.get("origin"), request.headers.get("host")
        if not auth.origin_allowed(origin, host):
            raise HTTPException(403, f"origin {origin} is not allowed")
        admin = auth.is_admin(request.headers.get("authorization"))
        key = None if admin else await access.api_key(request)
        tenant, user = body.tenant, body.user
        if key is not None:
            if tenant not in (None, key.tenant):
                raise HTTPException(403, f"this API key creates sessions of {key.tenant!r}")
            tenant = key.tenant
        elif not admin and (tenant is not None or user is not None):
            raise HTTPException(
                403, "only a backend with an API key names a session's tenant or user"
            )
        throttle.new_session_allowed(request, key, admin)
        # Where an anonymous session came from, as an opaque key: for an agent's per-client
        # share of its daily budget (Budget(per_client_daily=...)).
        origin_key = None if admin or key is not None else throttle.client_digest(request)
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

    @router.get("/v1/sessions/{session_id}", responses=refusals(401, 403, 404))
    async def get_session(session_id: Annotated[str, Depends(access.session_access)]) -> Any:
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

    @router.patch("/v1/sessions/{session_id}", responses=refusals(400, 401, 403, 404, 413, 422))
    async def change_session(
        body: SessionChange, session_id: Annotated[str, Depends(access.session_access)]
    ) -> Any:
        try:
            await sessions.rename(session_id, body.title)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"ok": True}

    @router.delete("/v1/sessions/{session_id}", status_code=204, responses=refusals(401, 403, 404))
    async def delete_session(
        request: Request, session_id: Annotated[str, Depends(access.session_access)]
    ) -> Response:
        try:
            await sessions.delete(session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        await access.audited(request, "session.deleted", f"session:{session_id}")
        return Response(status_code=204)

    @router.post(
        "/v1/sessions/{session_id}/feedback",
        responses=refusals(400, 401, 403, 404, 413, 422),
    )
    async def rate(body: Rating, session_id: Annotated[str, Depends(access.session_access)]) -> Any:
        try:
            await sessions.rate(session_id, body.turn_id, body.rating, body.comment)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"ok": True}

    @router.post("/v1/sessions/{session_id}/token", responses=refusals(401, 403, 404))
    async def refresh_token(
        request: Request,
        session_id: str,
        authorization: Annotated[str | None, Header()] = None,
        token: Annotated[str | None, Query()] = None,
    ) -> Any:
        """A fresh token: for the session's token (one expired for less than the refresh
        window will do: a widget opened again after days), the admin or its tenant's key."""
        if auth.is_admin(authorization) or await access.key_access(request, session_id):
            generation = await access.generation_of(session_id)
            await access.audited(request, "session.token_issued", f"session:{session_id}")
        else:
            bearer = authorization.partition(" ")[2] if authorization else None
            generation = await access.check_token(session_id, token or bearer, refreshing=True)
        return {"token": auth.issue(session_id, generation=generation)}

    @router.post("/v1/sessions/{session_id}/revoke", responses=refusals(401, 403, 404))
    async def revoke_tokens(
        request: Request, session_id: Annotated[str, Depends(access.backend_access)]
    ) -> Any:
        """Refuse every token issued for the session so far (its open connections close);
        the answer holds a token of the new generation for whoever should keep the session."""
        try:
            generation = await sessions.revoke_tokens(session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        await sessions.events.append(session_id, "session.revoked", {"generation": generation})
        await access.audited(
            request, "session.tokens_revoked", f"session:{session_id}", generation=generation
        )
        return {"token": auth.issue(session_id, generation=generation)}

    @router.get("/v1/sessions/{session_id}/messages", responses=refusals(401, 403, 404))
    async def history(
        request: Request, session_id: Annotated[str, Depends(access.session_access)]
    ) -> Any:
        try:
            messages = await sessions.history(session_id)
            rated = await sessions.ratings(session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        await access.audited(request, "session.read", f"session:{session_id}", what="messages")
        return [
            {**m.to_json(), "rating": rated[m.turn_id]} if m.turn_id in rated else m.to_json()
            for m in messages
        ]

    @router.post(
        "/v1/sessions/{session_id}/messages",
        status_code=202,
        responses=refusals(400, 401, 403, 404, 413, 422, 429),
    )
    async def post_message(
        request: Request,
        body: NewMessage,
        session_id: Annotated[str, Depends(access.session_access)],
    ) -> Any:
        throttle.message_allowed(request, session_id)
        with message_refusals():
            seq, created = await sessions.send(session_id, body.text, body.client_id)
        return {"seq": seq, "created": created}

    @router.post("/v1/sessions/{session_id}/cancel", responses=refusals(401, 403, 404))
    async def cancel(session_id: Annotated[str, Depends(access.session_access)]) -> Any:
        return {"cancelled": await sessions.cancel(session_id)}

    @router.get(
        "/v1/sessions/{session_id}/export",
        responses={200: {"content": {"text/markdown": {}}}, **refusals(401, 403, 404)},
    )
    async def export(
        request: Request,
        session_id: Annotated[str, Depends(access.session_access)],
        format: Literal["json", "md"] = "json",
    ) -> Any:
        what = f"export {format}"
        await access.audited(request, "session.read", f"session:{session_id}", what=what)
        try:
            if format == "md":
                text = await sessions.export_markdown(session_id)
                return PlainTextResponse(text, media_type="text/markdown")
            return await sessions.export(session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None

    return router
