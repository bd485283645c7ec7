"""The admin's routes: an operator's reply to a session (a human handoff), tenants' API
keys, the list of sessions, the audit log and cost reports."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam

from ...db import audit
from ...errors import ConfigurationError
from ...ledger import Ledger
from ...sessions import Sessions, UnknownSession
from ..access import RequestAccess, lookup
from ..answers import refusals
from ..bodies import NewKey, OperatorReply, StoredText
from ..keys import ApiKeys


def admin_routes(sessions: Sessions, access: RequestAccess) -> APIRouter:
    router = APIRouter(dependencies=[Depends(access.admin)])

    def pool() -> asyncpg.Pool:  # read per request: the engine may open after the app
        return sessions.engine.pool

    @router.post("/v1/sessions/{session_id}/operator", responses=refusals(400, 401, 404, 413, 422))
    async def operator(request: Request, session_id: str, body: OperatorReply) -> Any:
        lookup(session_id)
        target = f"session:{session_id}"
        try:
            if body.text:
                await sessions.operator_reply(session_id, body.text, body.operator)
                await access.audited(
                    request,
                    "operator.replied",
                    target,
                    operator=body.operator,
                    chars=len(body.text),
                )
            if body.state:
                await sessions.set_state(session_id, body.state)
                await access.audited(request, "session.state_set", target, state=body.state)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"ok": True}

    @router.post("/v1/keys", status_code=201, responses=refusals(400, 401, 413, 422))
    async def create_key(request: Request, body: NewKey) -> Any:
        """A tenant's API key, shown this once (the server keeps its hash)."""
        try:
            record, key = await ApiKeys(pool()).create(body.tenant, body.name)
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        await access.audited(request, "key.created", f"key:{record.prefix}", tenant=record.tenant)
        return {**record.to_json(), "key": key}

    @router.get("/v1/keys", responses=refusals(401))
    async def list_keys(tenant: Annotated[StoredText | None, Query(max_length=200)] = None) -> Any:
        return [k.to_json() for k in await ApiKeys(pool()).list(tenant)]

    @router.delete("/v1/keys/{key}", responses=refusals(401, 404))
    async def revoke_key(
        request: Request, key: Annotated[StoredText, PathParam(max_length=100)]
    ) -> Any:
        """Revoke a key by its id or prefix: it is refused from now on."""
        revoked = await ApiKeys(pool()).revoke(key)
        if revoked is None:
            raise HTTPException(404, f"no live key {key!r}")
        target = f"key:{revoked.prefix}"
        await access.audited(request, "key.revoked", target, tenant=revoked.tenant)
        return revoked.to_json()

    @router.get("/v1/sessions", responses=refusals(401))
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

    @router.get("/v1/audit", responses=refusals(401))
    async def audit_log(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        action: Annotated[StoredText | None, Query(max_length=100)] = None,
        target: Annotated[StoredText | None, Query(max_length=300)] = None,
        actor: Annotated[StoredText | None, Query(max_length=200)] = None,
    ) -> Any:
        """What the admin, operators and tenants' backends did, latest first."""
        found = await audit.recent(pool(), limit=limit, action=action, target=target, actor=actor)
        return [entry.to_json() for entry in found]

    @router.get("/v1/costs", responses=refusals(401, 422))
    async def costs(by: str = "model", tenant: StoredText | None = None) -> Any:
        try:
            rows = await Ledger(pool()).report(by, tenant=tenant)
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from None
        return [
            {**r.__dict__, "cost_usd": str(r.cost_usd), "saved_usd": str(r.saved_usd)} for r in rows
        ]

    return router
