"""Who a request is and what it may reach: the admin (its key as a bearer; to read, also the
dashboard's cookie or an open dashboard), a tenant's API key (sessions of its tenant), or a
signed token of one session. The checks routes depend on, and the audit log of what the
admin and tenants' backends did."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

from typing import Annotated, Any

import asyncpg
from fastapi import Header, HTTPException, Query, Request

from ..db import audit
from ..sessions import Sessions, UnknownSession
from ..sessions.access import Access
from ..sessions.text import storable
from .auth import Auth, AuthError
from .dashboard import COOKIE
from .keys import KEY_PREFIX, ApiKey, ApiKeys


def lookup(session_id: str) -> str:
    """A session id to look up: one PostgreSQL cannot compare (a NUL) names no session."""
    if not storable(session_id):
        raise HTTPException(404, f"no session with id {session_id!r}")
    return session_id


class RequestAccess:
    """`session_access`, `backend_access` and `admin` are FastAPI dependencies. `open_dashboard`:
    any reader of the dashboard may read sessions and costs."""

    def __init__(self, sessions: Sessions, auth: Auth, *, open_dashboard: bool) -> None:
        self.sessions = sessions
        self.auth = auth
        self.open_dashboard = open_dashboard

    def _pool(self) -> asyncpg.Pool:  # read per request: the engine may open after the app
        return self.sessions.engine.pool

    def is_admin(self, request: Request) -> bool:
        """The admin key as a bearer; to read (GET), also the dashboard's cookie (its export
        link) or an open dashboard. A cookie never changes anything: no cross-site request
        can use it to."""
        if self.auth.is_admin(request.headers.get("authorization")):
            return True
        return request.method in ("GET", "HEAD") and (
            self.open_dashboard or self.auth.is_admin_cookie(request.cookies.get(COOKIE))
        )

    async def api_key(self, request: Request) -> ApiKey | None:
        """The tenant API key the request bears, if it bears one; a wrong or revoked one is
        refused (401) rather than taken for no key. Verified once a request (the access
        check and the audit log both ask)."""
        scheme, _, bearer = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not bearer.startswith(KEY_PREFIX):
            return None
        found: ApiKey | None = getattr(request.state, "api_key", None)
        if found is None:
            found = await ApiKeys(self._pool()).verify(bearer)
            if found is None:
                raise HTTPException(401, "the API key is not valid or was revoked")
            request.state.api_key = found
        return found

    async def actor(self, request: Request) -> str | None:
        """Who a request acts as, for the audit log: the admin (its key, or the dashboard's
        cookie), a tenant's API key (by its prefix), or None (a session's own token)."""
        if self.auth.is_admin(request.headers.get("authorization")):
            return "admin"
        if self.is_admin(request):
            return "dashboard"
        key = await self.api_key(request)
        return f"key:{key.prefix}" if key is not None else None

    async def audited(self, request: Request, action: str, target: str = "", **detail: Any) -> None:
        """Record the action if the admin or a tenant's backend did it (a session's own
        user acting on it is not audited)."""
        who = await self.actor(request)
        if who is not None:
            address = request.client.host if request.client else None
            await audit.record(self._pool(), who, action, target, detail, address)

    async def access_of(self, session_id: str) -> Access:
        """The session's tenant and token generation (404 if there is no such session)."""
        try:
            return await self.sessions.access(lookup(session_id))
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None

    async def generation_of(self, session_id: str) -> int:
        return (await self.access_of(session_id)).token_generation

    async def key_access(self, request: Request, session_id: str) -> bool:
        """The request bears an API key of the session's tenant (403: another tenant's)."""
        key = await self.api_key(request)
        if key is None:
            return False
        if (await self.access_of(session_id)).tenant != key.tenant:
            raise HTTPException(403, "the API key is another tenant's")
        return True

    async def check_token(
        self, session_id: str, token: str | None, *, refreshing: bool = False
    ) -> int:
        """A token of this session, of its current generation (expired for less than the
        refresh window when `refreshing`); that generation. The signature is checked before
        any query."""
        try:
            generation = self.auth.verify(token, session_id, refreshing=refreshing)
            self.auth.check_generation(generation, await self.generation_of(session_id))
        except AuthError as exc:
            raise HTTPException(401 if exc.code != "forbidden" else 403, str(exc)) from None
        return generation

    async def session_access(
        self,
        request: Request,
        session_id: str,
        authorization: Annotated[str | None, Header()] = None,
        token: Annotated[str | None, Query()] = None,
    ) -> str:
        """The admin, an API key of the session's tenant, or a token of the session; each
        way, a session that exists (404: the admin's `/events` would wait forever on none)."""
        if self.is_admin(request):
            await self.generation_of(session_id)
        elif not await self.key_access(request, session_id):
            bearer = authorization.partition(" ")[2] if authorization else None
            await self.check_token(session_id, token or bearer)
        return lookup(session_id)

    async def backend_access(
        self,
        request: Request,
        session_id: str,
        authorization: Annotated[str | None, Header()] = None,
    ) -> str:
        """The admin or an API key of the session's tenant: a token never suffices."""
        if not self.auth.is_admin(authorization) and not await self.key_access(request, session_id):
            raise HTTPException(
                401, "the admin key or an API key of the session's tenant is required"
            )
        return lookup(session_id)

    def admin(
        self, request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> None:
        if not self.is_admin(request):
            raise HTTPException(401, "the admin API key is required")
