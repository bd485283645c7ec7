"""uvicorn's HTTP protocol (httptools) with two limits it lacks: a request's headers must
arrive within `header_timeout` seconds of its first byte (of the connection, for the first
request), and they may not pass `max_header_bytes`. Without them, sockets that send half a
request and wait hold their file descriptors for ever."""

from __future__ import annotations

import asyncio
from typing import Any

from .limits import Limits


def http_protocol(limits: Limits) -> type[asyncio.Protocol] | str:
    """The protocol class for `uvicorn.Config(http=...)`; uvicorn's own h11 one (which
    bounds header size but not time) where httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "h11"

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
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

    return GuardedHttpToolsProtocol
