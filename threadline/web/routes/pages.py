"""What a browser loads: the demo page, the full-page chat, the widget script, and the API's
documentation (open on a loopback server, else the admin's)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

import functools
import gzip
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from ...sessions import Sessions
from ..access import RequestAccess
from ..security import docs_policy

WEB = Path(__file__).parent.parent
templates = Jinja2Templates(directory=str(WEB / "templates"))


@functools.cache
def widget_bundle() -> str:
    """The widget (static/widget.js, its renderer markdown.js and its styles widget.css) with
    the libraries it uses (static/vendor: marked, highlight.js), in one function scope: one
    script tag, and nothing added to the host page's globals (marked's UMD build sees
    `module`; highlight.js's build is a `var hljs` in that scope)."""
    static = WEB / "static"

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


def page_routes(sessions: Sessions, access: RequestAccess, *, public_docs: bool) -> APIRouter:
    """`public_docs`: /docs and /openapi.json without the admin key."""
    router = APIRouter(include_in_schema=False)

    def docs_allowed(request: Request) -> None:
        if not (public_docs or access.is_admin(request)):
            raise HTTPException(401, "the admin API key is required")

    @router.get("/openapi.json")
    async def openapi_schema(request: Request) -> Response:
        docs_allowed(request)
        return JSONResponse(request.app.openapi())

    @router.get("/docs")
    async def api_docs(request: Request) -> Response:
        docs_allowed(request)
        nonce = request.state.csp_nonce
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="threadline API")
        html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
        return HTMLResponse(html, headers={"content-security-policy": docs_policy(nonce)})

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> Any:
        agents = [{"name": a.name, "title": a.title or a.name} for a in sessions.agents.values()]
        return templates.TemplateResponse(request, "index.html", {"agents": agents})

    @router.get("/widget.js")
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

    @router.get("/chat/{agent}", response_class=HTMLResponse)
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

    @router.get("/chat-page.js")
    async def chat_page_script() -> Response:
        script = (WEB / "static" / "chat-page.js").read_text(encoding="utf-8")
        return Response(script, media_type="text/javascript")

    return router
