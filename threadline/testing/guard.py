"""No test reaches a real provider: while a test runs, resolving a name that is not this
machine's or connecting a socket to an address beyond loopback fails, and the test fails
with the reason, even where the code under test caught the error (an SDK turns it into a
connection error, the router into a fallback).

Unix sockets, loopback addresses, `localhost` and the host of `DATABASE_URL` are allowed.
`@pytest.mark.threadline_network` lets a test out. The guard covers the standard library's
sockets, which asyncio's default event loop and every HTTP client on it use.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

__all__ = ["NetworkBlocked", "NetworkGuard"]

HELP = (
    "tests must not reach real model providers: script the model (threadline.testing."
    "ScriptedModel), replay a recorded cassette (`threadline_cassette`), or mark the test "
    "@pytest.mark.threadline_network"
)
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", ""})


class NetworkBlocked(ConnectionRefusedError):
    """A test tried to reach beyond this machine."""


def _is_local_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


class NetworkGuard:
    """Patches `socket.getaddrinfo` and `socket.socket.connect` / `connect_ex` once; checks
    only while `enabled`. `violations` collects what was refused."""

    def __init__(self, allowed_hosts: frozenset[str] = frozenset()) -> None:
        database = os.environ.get("DATABASE_URL")
        extra = {urlsplit(database).hostname or ""} if database else set()
        self.allowed_hosts = allowed_hosts | extra | {socket.gethostname()}
        self.enabled = False
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._originals: dict[str, Any] = {}
        self._installs = 0

    def host_allowed(self, host: Any) -> bool:
        if host is None:
            return True
        name = host.decode() if isinstance(host, bytes) else str(host)
        name = name.strip("[]").lower()
        return (
            name in _LOCAL_NAMES
            or name.endswith(".localhost")
            or name in self.allowed_hosts
            or _is_local_address(name)
        )

    def _refuse(self, what: str) -> NetworkBlocked:
        message = f"the network guard refused {what}: {HELP}"
        with self._lock:
            self.violations.append(message)
        return NetworkBlocked(message)

    def install(self) -> None:
        """Patch the socket module (counted: a nested pytest session installs it again)."""
        self._installs += 1
        if self._originals:
            return
        getaddrinfo = socket.getaddrinfo
        connect = socket.socket.connect
        connect_ex = socket.socket.connect_ex
        self._originals = {"getaddrinfo": getaddrinfo, "connect": connect, "ex": connect_ex}
        guard = self

        def guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if guard.enabled and not guard.host_allowed(host):
                name = host.decode() if isinstance(host, bytes) else str(host)
                try:
                    ipaddress.ip_address(name)
                    what = f"a connection to {(name, port)!r}"
                except ValueError:
                    what = f"a lookup of {name!r}"
                raise guard._refuse(what)
            return getaddrinfo(host, port, *args, **kwargs)

        def check(sock: socket.socket, address: Any) -> None:
            if not guard.enabled or sock.family not in (socket.AF_INET, socket.AF_INET6):
                return
            host = address[0] if isinstance(address, tuple) else address
            if not guard.host_allowed(host):
                raise guard._refuse(f"a connection to {address!r}")

        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            def guarded(sock: socket.socket, address: Any) -> Any:
                check(sock, address)
                return original(sock, address)

            return guarded

        socket.getaddrinfo = guarded_getaddrinfo
        socket.socket.connect = wrap(connect)  # type: ignore[method-assign]
        socket.socket.connect_ex = wrap(connect_ex)  # type: ignore[method-assign]

    def uninstall(self) -> None:
        self._installs -= 1
        if self._installs > 0 or not self._originals:
            return
        socket.getaddrinfo = self._originals["getaddrinfo"]
        socket.socket.connect = self._originals["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = self._originals["ex"]  # type: ignore[method-assign]
        self._originals = {}

    @contextmanager
    def checking(self, enabled: bool = True) -> Iterator[None]:
        """Check (or not) while the block runs."""
        before, self.enabled = self.enabled, enabled
        try:
            yield
        finally:
            self.enabled = before

    def take_violations(self) -> list[str]:
        with self._lock:
            found, self.violations = self.violations, []
        return found
