"""What one client may ask of the server: request sizes, rates (token buckets per client
address and per session, in this process's memory), streams open per session, and the
dashboard login's backoff after failures. `Limits` is the settings (`from_env` reads
`THREADLINE_*`), `Limiter` the state one app keeps."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigurationError

Clock = Callable[[], float]


@dataclass(frozen=True)
class Rate:
    """`count` requests per `per` seconds, `count` of them at once (a token bucket)."""

    count: int
    per: float

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """`20/60` or `20/1m` (s, m, h); `0` or `off`: no limit."""
        text = text.strip().lower()
        if text in ("0", "off", "none"):
            return None
        found = re.fullmatch(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*([smh]?)", text)
        if found is None or int(found[1]) == 0 or float(found[2]) == 0:
            raise ConfigurationError(f"{text!r} is not a rate: write COUNT/SECONDS, e.g. 20/60")
        unit = {"": 1, "s": 1, "m": 60, "h": 3600}[found[3]]
        return cls(int(found[1]), float(found[2]) * unit)


@dataclass(frozen=True)
class Limits:
    """Defaults for a public server; `None` turns a rate off. Rates count per client address
    (an IPv6 client by its /64) and, for messages, per session too, across its connections.
    Behind a reverse proxy the client address is the proxy's unless it sends
    `X-Forwarded-For` and `FORWARDED_ALLOW_IPS` names it (uvicorn's setting)."""

    max_body_bytes: int = 1024 * 1024
    new_sessions: Rate | None = Rate(20, 60)  # per client address
    key_sessions: Rate | None = Rate(600, 60)  # per API key (a site's backend, for its users)
    messages: Rate | None = Rate(120, 60)  # per client address: REST, WebSocket, AI SDK
    session_messages: Rate | None = Rate(8, 10)  # per session, whatever the connection
    streams_per_session: int = 8  # WebSockets and event streams (SSE, AI SDK) open at once
    connections_per_client: int | None = 256  # per address, HTTP and WebSocket; not a proxy's
    new_connections: Rate | None = Rate(120, 10)  # connections opened per address; not a proxy's
    login_failures: int = 5  # failed dashboard logins per address before the backoff
    login_backoff: float = 1.0  # seconds after the first failure past those; doubles
    login_backoff_max: float = 900.0
    header_timeout: float = 10.0  # seconds for a request's headers to arrive
    max_header_bytes: int = 64 * 1024
    max_connections: int | None = field(default_factory=lambda: _connections_for_fds())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """The defaults, changed by the variables set (see docs/deploy.md)."""
        env = os.environ if env is None else env
        changes: dict[str, Any] = {}
        for name, attr in _RATES.items():
            if env.get(name):
                changes[attr] = Rate.parse(env[name])
        for name, attr in _NUMBERS.items():
            if env.get(name):
                try:
                    changes[attr] = int(env[name])
                except ValueError:
                    raise ConfigurationError(f"{name} must be a whole number") from None
                if changes[attr] < 1:
                    raise ConfigurationError(f"{name} must be at least 1")
        return replace(cls(), **changes)


_RATES = {
    "THREADLINE_RATE_NEW_SESSIONS": "new_sessions",
    "THREADLINE_RATE_KEY_SESSIONS": "key_sessions",
    "THREADLINE_RATE_MESSAGES": "messages",
    "THREADLINE_RATE_SESSION_MESSAGES": "session_messages",
    "THREADLINE_RATE_CONNECTIONS": "new_connections",
}
_NUMBERS = {
    "THREADLINE_MAX_BODY_BYTES": "max_body_bytes",
    "THREADLINE_STREAMS_PER_SESSION": "streams_per_session",
    "THREADLINE_CONNECTIONS_PER_CLIENT": "connections_per_client",
    "THREADLINE_MAX_CONNECTIONS": "max_connections",
}


def _connections_for_fds() -> int | None:
    """Connections at once: what the process's file descriptor limit leaves after the
    database pool, logs and the rest (a client holding sockets open cannot take them all)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(64, soft - 128)


def client_key(host: str | None) -> str:
    """Who a rate counts against: the address, an IPv6 one by its /64 (one subscriber's)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return host


class TokenBuckets:
    """One bucket per key, kept while it is not full: memory follows the active clients."""

    MAX_KEYS = 100_000

    def __init__(self, rate: Rate | None, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Take a token: 0 when there was one, else the seconds until there is."""
        if self.rate is None:
            return 0.0
        now, capacity = self.clock(), float(self.rate.count)
        refill = capacity / self.rate.per  # tokens a second
        tokens, at = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - at) * refill)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / refill
        if len(self._buckets) >= self.MAX_KEYS:
            self._forget_full(now)
        self._buckets[key] = (tokens - 1, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        assert self.rate is not None
        self._buckets = {
            k: (t, at) for k, (t, at) in self._buckets.items() if now - at < self.rate.per
        }


class Backoff:
    """Failures per key: after `free` of them, each attempt waits `base` seconds, doubled
    for each further failure (up to `most`); a success forgets the key."""

    MAX_KEYS = 100_000

    def __init__(self, free: int, base: float, most: float, clock: Clock = time.monotonic) -> None:
        self.free, self.base, self.most, self.clock = free, base, most, clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (count, until)

    def wait(self, key: str) -> float:
        """Seconds until `key` may try again (0: now)."""
        _, until = self._failures.get(key, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, key: str) -> None:
        count, _ = self._failures.get(key, (0, 0.0))
        count += 1
        now = self.clock()
        delay = 0.0 if count < self.free else min(self.most, self.base * 2 ** (count - self.free))
        if len(self._failures) >= self.MAX_KEYS:
            self._failures = {k: v for k, v in self._failures.items() if v[1] > now}
        self._failures[key] = (count, now + delay)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


class Limiter:
    """The limits' state for one app (one process)."""

    def __init__(self, limits: Limits, clock: Clock = time.monotonic) -> None:
        self.limits = limits
        self.new_sessions = TokenBuckets(limits.new_sessions, clock)
        self.key_sessions = TokenBuckets(limits.key_sessions, clock)
        self.messages = TokenBuckets(limits.messages, clock)
        self.session_messages = TokenBuckets(limits.session_messages, clock)
        self.logins = Backoff(
            limits.login_failures, limits.login_backoff, limits.login_backoff_max, clock
        )
        self._sockets: dict[str, int] = {}

    def message(self, client: str | None, session_id: str) -> float:
        """A message from `client` to `session_id`: 0 when it may go, else seconds to wait."""
        return self.messages.take(client_key(client)) or self.session_messages.take(session_id)

    def new_session(self, client: str | None) -> float:
        return self.new_sessions.take(client_key(client))

    def open_stream(self, session_id: str) -> bool:
        """Count a WebSocket or event stream of the session in, unless it has as many as it
        may."""
        count = self._sockets.get(session_id, 0)
        if count >= self.limits.streams_per_session:
            return False
        self._sockets[session_id] = count + 1
        return True

    def stream_room(self, session_id: str) -> bool:
        """Whether the session may open another stream now."""
        return self._sockets.get(session_id, 0) < self.limits.streams_per_session

    def open_streams(self) -> int:
        """WebSockets and event streams open now, all sessions."""
        return sum(self._sockets.values())

    def close_stream(self, session_id: str) -> None:
        count = self._sockets.pop(session_id, 0) - 1
        if count > 0:
            self._sockets[session_id] = count


def retry_after(seconds: float) -> str:
    """A `Retry-After` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
