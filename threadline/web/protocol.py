"""uvicorn's protocols (httptools for HTTP, websockets' sans-I/O one for WebSockets) with the
limits they lack:

- a request's headers must arrive within `header_timeout` seconds of its first byte (of the
  connection, for the first request), and may not pass `max_header_bytes`: without them,
  sockets that send half a request and wait hold their file descriptors for ever;
- one client address holds at most `connections_per_client` connections at once (HTTP and
  WebSocket alike) and opens them at most at the `new_connections` rate; beyond, a connection
  is reset at `connection_made`, before a parser is made for it or a byte read: one client
  cannot take the connections, or the time, every other client needs. A trusted proxy's address
  (`FORWARDED_ALLOW_IPS`) is not counted: it speaks for many clients, and limits them itself;
- a WebSocket text frame that is not UTF-8 closes its connection (1007) with one line at
  debug level, not a traceback in the log that anyone can write."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from typing import Any, cast

from .limits import Limits, Rate, TokenBuckets, client_key

log = logging.getLogger(__name__)


class TrustedProxies:
    """The addresses `FORWARDED_ALLOW_IPS` names (uvicorn's setting: addresses, networks,
    `*` for all), as uvicorn reads them."""

    def __init__(self, allowed: str | Iterable[str] | None) -> None:
        items = allowed.split(",") if isinstance(allowed, str) else list(allowed or [])
        names = [item.strip() for item in items if item.strip()]
        self.everyone = "*" in names
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.literals: set[str] = set()
        for name in names:
            try:
                self.networks.append(ipaddress.ip_network(name, strict=False))
            except ValueError:
                self.literals.add(name)

    def __contains__(self, host: str) -> bool:
        if self.everyone or host in self.literals:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


class ClientConnections:
    """The connections open per client address (an IPv6 one by its /64), and the rate at
    which it opens them."""

    def __init__(self, most: int | None, trusted: TrustedProxies, rate: Rate | None = None) -> None:
        self.most = most
        self.trusted = trusted
        self.opened = TokenBuckets(rate)
        self._open: dict[str, set[asyncio.BaseTransport]] = {}
        self._client: dict[asyncio.BaseTransport, str] = {}  # transport -> its client's key

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Count the connection in, unless its client holds as many as it may or opens them
        faster than it may (then False). A transport already counted (an HTTP connection
        upgraded to a WebSocket) is in."""
        if transport in self._client:
            return True
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else None
        if not isinstance(host, str) or host in self.trusted:
            return True
        client = client_key(host)
        held = self._open.get(client, set())
        if (self.most is not None and len(held) >= self.most) or self.opened.take(client):
            return False
        self._open[client] = held
        held.add(transport)
        self._client[transport] = client
        return True

    def release(self, transport: asyncio.BaseTransport) -> None:
        client = self._client.pop(transport, None)
        if client is None:
            return
        held = self._open.get(client)
        if held is not None:
            held.discard(transport)
            if not held:
                del self._open[client]


# The ASGI scope extension of a session WebSocket served by `protocols()`'s class: a function
# that writes a text frame at once, or says it cannot (see `send_text_now`).
SEND_NOW = "threadline.send_text_now"


def protocols(
    limits: Limits, forwarded_allow_ips: str | Iterable[str] | None
) -> tuple[type[asyncio.Protocol] | str, type[asyncio.Protocol] | str]:
    """The classes for `uvicorn.Config(http=..., ws=...)`; uvicorn's own h11 and automatic
    ones (h11 bounds header size, not time; neither counts connections) where httptools or
    websockets is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
    except ImportError:
        return "h11", "auto"
    per_client = ClientConnections(
        limits.connections_per_client,
        TrustedProxies(forwarded_allow_ips),
        limits.new_connections,
    )

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            per_client.release(self.transport)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._arm()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > limits.max_header_bytes:
                # The parser turns this into a 400 and closes the connection.
                raise ValueError("request headers too large")

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(limits.header_timeout, self._late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _late(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
        """Takes over an upgraded connection (counted already) and releases it at its end;
        offers the app a way to write a text frame at once (`SEND_NOW`)."""

        def connection_lost(self, exc: Exception | None) -> None:
            per_client.release(self.transport)
            super().connection_lost(exc)

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            if not self.close_sent:  # upgraded: the app's task starts after this
                extensions = cast(dict[str, Any], self.scope["extensions"])
                extensions[SEND_NOW] = self.send_text_now

        def send_text_now(self, text: str) -> bool:
            """Write a text frame now, as `websocket.send` would, without the ASGI message
            and the middleware's wrappers: the frame of a streamed token, thousands a second.
            False (nothing written) unless the socket takes writes now and the connection is
            open: the caller then sends it the ASGI way, which waits, in order."""
            if (
                not self.handshake_complete
                or self.close_sent
                or self.disconnected
                or self.initial_response is not None
                or not self.writable.is_set()
                or self.transport.is_closing()
            ):
                return False
            self.conn.send_text(text.encode())
            self.transport.write(b"".join(self.conn.data_to_send()))
            return True

        def send_receive_event_to_app(self) -> None:
            if self.curr_msg_data_type == "text" and not self.close_sent:
                try:
                    b"".join(self.frames).decode()
                except UnicodeDecodeError:
                    log.debug("closed a WebSocket that sent a text frame not in UTF-8")
                    self.frames = []
                    self.conn.send_close(1007)
                    self.handle_parser_exception()
                    return
            super().send_receive_event_to_app()

    class Gate(asyncio.Protocol):
        """What a new connection meets first: a client over its count is reset here, before
        an HTTP protocol (its parser, its state) is made for it; any other is handed to one."""

        def __init__(self, **options: Any) -> None:
            self.options = options

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if not per_client.admit(transport):
                # Nothing read, nothing answered: the cheapest refusal.
                cast(asyncio.Transport, transport).abort()
                return
            protocol = GuardedHttpToolsProtocol(**self.options)
            transport.set_protocol(protocol)
            protocol.connection_made(transport)

    return Gate, GuardedWebSocketProtocol
