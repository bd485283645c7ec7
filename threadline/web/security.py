"""The checks every request passes before the app sees it, as pure ASGI middleware (they see
WebSockets too): the Host header (DNS rebinding), the body size, and the security headers
every response carries (a Content-Security-Policy per kind of page)."""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def host_name(netloc: str) -> str:
    """`example.com:8000` -> `example.com`, `[::1]:8000` -> `::1`, lowercased."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


@dataclass(frozen=True)
class Hosts:
    """The Host header values the server answers to: the loopback names, `names`, and, for
    a server on every interface, any IP address (a page cannot rebind a name to an address
    it does not own). `origins`: the server's public origins (`THREADLINE_PUBLIC_URL`)."""

    names: frozenset[str] = LOCAL_NAMES
    any_ip: bool = False
    origins: tuple[str, ...] = ()

    @classmethod
    def serving(cls, bound: str, public_urls: Iterable[str] = ()) -> Hosts:
        origins = tuple(_origin(url) for url in public_urls if url.strip())
        names = set(LOCAL_NAMES) | {host_name(urlsplit(o).netloc) for o in origins}
        if bound not in WILDCARDS:
            names.add(host_name(bound))
        return cls(frozenset(names), any_ip=bound in WILDCARDS, origins=origins)

    def allows(self, host: str | None) -> bool:
        if not host:
            return False
        name = host_name(host)
        if name in self.names:
            return True
        if not self.any_ip:
            return False
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def own_origin(self, origin: str | None, host: str | None) -> bool:
        """Whether a browser's `Origin` is this server's own (the Host it asked, or a public
        URL): what a form of the dashboard may be posted from."""
        if origin is None:
            return True  # not a browser
        return origin in self.origins or (host is not None and urlsplit(origin).netloc == host)


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        from ..errors import ConfigurationError

        raise ConfigurationError(f"{url!r} is not a URL like https://chat.example.com")
    return f"{parts.scheme}://{parts.netloc}".lower()


class HostCheck:
    """400 for a request whose Host is not one the server answers to; a WebSocket with
    one is refused at its handshake."""

    def __init__(self, app: ASGIApp, hosts: Hosts) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.hosts.allows(
            Headers(scope=scope).get("host")
        ):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "invalid host"})
        else:
            await _plain(send, 400, "invalid host header")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request bodies are limited to {limit} bytes")


CLOSE_BEYOND = 8  # times the body limit: announced bodies larger are never read


class BodyLimit:
    """413 for a body over `limit` bytes: at once when its Content-Length says so, else as
    soon as what arrived passes it (a chunked body). Reading stops there."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            # A body far over the limit is never read: the connection closes with the answer
            # (a client still sending may see a reset instead). A nearer one is read past and
            # discarded, so that a client that sent it all reads its 413.
            huge = not length.isdigit() or int(length) > CLOSE_BEYOND * self.limit
            status = 413 if length.isdigit() else 400
            await _plain(send, status, "request body too large", close=huge)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)  # FastAPI answers an HTTPException as is
            return message

        await self.app(scope, limited, send)


HSTS = "max-age=31536000"  # a year; no includeSubDomains: the other hosts are not ours to say


class SecurityHeaders:
    """`nosniff`, Strict-Transport-Security over https, no referrer to other sites
    (`same-origin`: under `no-referrer` a browser posts a form with `Origin: null`, which the
    login's check refuses), and a
    Content-Security-Policy on every response: the dashboard and the API docs may not be
    framed; the chat pages (`/`, `/chat/{agent}`) may be, by the origins allowed to embed the
    widget. A page's inline script carries the nonce in `request.state.csp_nonce`."""

    def __init__(self, app: ASGIApp, embedders: Iterable[str] = ()) -> None:
        self.app = app
        found = list(embedders)
        self.frame_ancestors = "*" if "*" in found else " ".join(["'self'", *found])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        path: str = scope["path"]
        host = Headers(scope=scope).get("host", "")
        # https as the client sees it: uvicorn takes X-Forwarded-Proto from a trusted proxy.
        https = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "same-origin")
                headers.setdefault("content-security-policy", self.policy(path, nonce, host))
                if https:  # browsers keep to https for this host from now on
                    headers.setdefault("strict-transport-security", HSTS)
                if _is_admin_page(path):
                    headers.setdefault("x-frame-options", "DENY")
                    headers.setdefault("cross-origin-opener-policy", "same-origin")
            await send(message)

        await self.app(scope, receive, with_headers)

    def policy(self, path: str, nonce: str, host: str) -> str:
        common = "object-src 'none'; base-uri 'none'; form-action 'self'"
        if _is_admin_page(path):
            return (
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                f"img-src 'self' data:; connect-src 'self'; {common}; frame-ancestors 'none'"
            )
        if path == "/" or path.startswith("/chat/"):
            # The widget writes its styles into its shadow root: inline styles are needed.
            return (
                f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
                f"connect-src 'self' ws://{host} wss://{host}; {common}; "
                f"frame-ancestors {self.frame_ancestors}"
            )
        return "default-src 'none'; frame-ancestors 'none'"


def docs_policy(nonce: str) -> str:
    """Swagger UI, as FastAPI serves it: its script and styles from jsDelivr."""
    cdn = "https://cdn.jsdelivr.net"
    return (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}' {cdn}; "
        f"style-src 'self' 'unsafe-inline' {cdn}; "
        "img-src 'self' data: https://fastapi.tiangolo.com; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


def _is_admin_page(path: str) -> bool:
    return path == "/dashboard" or path.startswith(("/dashboard/", "/docs", "/openapi.json"))


async def _plain(send: Send, status: int, text: str, *, close: bool = False) -> None:
    body = json.dumps({"detail": text}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
