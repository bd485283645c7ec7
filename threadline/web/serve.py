"""`threadline serve`: web server and worker in one process, on the embedded database unless
`DATABASE_URL` says otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from ..agents import Agent
from ..db.embedded import default_data_dir
from ..engine import Engine
from ..errors import ConfigurationError
from ..loop import settle_heap
from ..sessions import Sessions
from .app import create_app
from .auth import Auth
from .health import NodeState
from .hub import Hub
from .limits import Limits
from .protocol import protocols
from .security import LOCAL_NAMES, WILDCARDS, Hosts

log = logging.getLogger(__name__)

# A turn spends nearly all its time waiting on the model's stream, so one process can run
# many more of them at once than CPU-bound workflow runs (the engine's default is 100).
SERVE_CONCURRENCY = 1000


def load_secret(data_dir: Path | None) -> str:
    """$THREADLINE_SECRET, else one kept in the data directory (tokens survive restarts)."""
    configured = os.environ.get("THREADLINE_SECRET")
    if configured:
        return configured
    return _kept_random(data_dir, "secret")


def admin_key_file(data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / "admin-key"


def load_admin_key(data_dir: Path | None) -> str:
    """$THREADLINE_ADMIN_KEY, else one made at the first start and kept in the data
    directory (`admin-key`, mode 600): the dashboard and the admin API are never open."""
    return os.environ.get("THREADLINE_ADMIN_KEY") or _kept_random(data_dir, "admin-key")


def _kept_random(data_dir: Path | None, name: str) -> str:
    path = (data_dir or default_data_dir()) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # created readable by its owner only
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def public_urls() -> list[str]:
    """$THREADLINE_PUBLIC_URL: the URLs the server is reached at (comma-separated)."""
    found = os.environ.get("THREADLINE_PUBLIC_URL", "").split(",")
    return [url.strip().rstrip("/") for url in found if url.strip()]


def auth_from_env(data_dir: Path | None = None) -> Auth:
    """The public URLs are allowed origins too (a proxy may pass another Host on)."""
    origins = os.environ.get("THREADLINE_ALLOWED_ORIGINS", "").split(",")
    return Auth(
        secret=load_secret(data_dir),
        admin_key=load_admin_key(data_dir),
        allowed_origins=tuple(o.strip() for o in origins if o.strip()) + tuple(public_urls()),
    )


def wants_login_link(open_dashboard: bool) -> bool:
    """A key made by the server itself (not set by its operator): a link that logs in once
    spares reading it from its file."""
    return not open_dashboard and not os.environ.get("THREADLINE_ADMIN_KEY")


def log_login_link(host: str, port: int, token: str) -> None:
    log.warning(
        "dashboard login (works once): %s  (the admin key is in %s)",
        _login_link(host, port, token),
        admin_key_file(),
    )


def app_from_env(
    sessions: Sessions,
    hub: Hub,
    *,
    host: str,
    port: int,
    open_dashboard: bool,
    login_link: bool = True,
) -> tuple[FastAPI, Limits]:
    """The app `threadline serve` serves, as the environment configures it; logs how to
    reach the dashboard (`login_link`: with a link that logs in once, where the server made
    the admin key)."""
    limits = Limits.from_env()
    wanted = login_link and wants_login_link(open_dashboard)
    login_token = secrets.token_urlsafe(32) if wanted else None
    app = create_app(
        sessions,
        hub,
        auth_from_env(),
        open_dashboard=open_dashboard,
        limits=limits,
        hosts=Hosts.serving(host, public_urls()),
        public_docs=host in LOCAL_NAMES,
        login_token=login_token,
    )
    if open_dashboard:
        log.warning(
            "the dashboard is open (--open-dashboard): anyone who reaches this server reads"
            " every conversation and its costs"
        )
    elif login_token is not None:
        log_login_link(host, port, login_token)
    return app, limits


SHUTDOWN_GRACE_S = 10


def uvicorn_config(
    app: FastAPI, host: str, port: int, limits: Limits, **settings: Any
) -> uvicorn.Config:
    """uvicorn's settings for `app` under `limits`; `settings` override the defaults here
    (a test server's quieter log, say)."""
    defaults: dict[str, Any] = {
        "log_level": "warning",
        "lifespan": "off",
        "timeout_keep_alive": 5,
        # A stop waits this long for open requests and sockets, then ends them: a client
        # that never closes its connection cannot keep the process from exiting.
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_S,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
        "limit_concurrency": limits.max_connections,  # 503 beyond, before the fds run out
        "ws_max_size": max(limits.max_body_bytes, 64 * 1024),
        # Frames are small JSON deltas: compressing each costs more than it saves.
        "ws_per_message_deflate": False,
    }
    config = uvicorn.Config(app, host=host, port=port, **(defaults | settings))
    # Bound the time and size of a request's headers and the connections per client (a
    # proxy uvicorn trusts for X-Forwarded-For is not counted: it speaks for many).
    config.http, config.ws = protocols(limits, config.forwarded_allow_ips)
    return config


def drain_delay() -> float:
    """`THREADLINE_DRAIN_DELAY`: seconds a stopping server goes on serving, not ready, before
    it closes its port (default 0): time for a load balancer's checks to send new work
    elsewhere."""
    value = os.environ.get("THREADLINE_DRAIN_DELAY", "") or "0"
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 300:
        raise ConfigurationError("THREADLINE_DRAIN_DELAY must be a number of seconds, 0 to 300")
    return seconds


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which on a stop first turns the node not ready (`/readyz` 503) and
    serves on for `drain_delay()` seconds; then uvicorn's own shutdown: the port closes,
    WebSockets close with 1012 (the widget reconnects, through the balancer, to another
    node), open requests get `SHUTDOWN_GRACE_S` to finish."""

    def __init__(self, config: uvicorn.Config, node: NodeState) -> None:
        super().__init__(config)
        self.node = node
        self.delay = drain_delay()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.node.draining = True
        if self.delay:
            log.warning("draining: not ready; closing in %.0f s", self.delay)
            await asyncio.sleep(self.delay)
        await super().shutdown(sockets)


def connections_used(engine: Engine) -> str:
    """What this process holds of the database, for the log: its pool at most, the engine's
    listener (LISTEN, and the worker's session lock) and the hub's (LISTEN)."""
    size = engine.pool.get_max_size()
    return f"pool up to {size} + 2 listening = {size + 2} at most"


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket bound with SO_REUSEPORT: several processes bind the same port and
    the kernel spreads new connections among them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _login_link(host: str, port: int, token: str) -> str:
    urls = public_urls()
    if urls:
        base = urls[0]
    else:
        shown = "127.0.0.1" if host in WILDCARDS else host
        base = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
    return f"{base}/dashboard/login?token={token}"


@contextlib.contextmanager
def _survive_sigterm() -> Iterator[None]:
    """uvicorn shuts down on SIGTERM, then raises the signal again for the handler it found.
    SIGTERM's default action would then kill the process before the worker drains its turns
    and the embedded database stops; a no-op handler lets `serve` return and clean up."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, lambda: None)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread: not ours
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def serve(
    agents: Iterable[Agent],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    database_url: str | None = None,
    worker: bool = True,
    concurrency: int | None = None,
    engine: Engine | None = None,
    open_dashboard: bool = False,
    reuse_port: bool = False,
    login_link: bool = True,
) -> None:
    """`concurrency`: turns and runs the worker executes at once (default 1000).
    `open_dashboard`: the dashboard without a login (anyone who reaches the server reads
    every conversation and cost). `reuse_port`: bind with SO_REUSEPORT, beside the other
    processes of `threadline serve --processes N` (the kernel spreads connections among
    them). `login_link`: log a dashboard login link when the server made the admin key."""
    engine = engine or Engine(
        database_url, worker=worker, concurrency=concurrency or SERVE_CONCURRENCY
    )
    sessions = Sessions(engine, agents)
    async with engine:
        hub = Hub(engine.listen_url)
        await hub.start()
        try:
            app, limits = app_from_env(
                sessions,
                hub,
                host=host,
                port=port,
                open_dashboard=open_dashboard,
                login_link=login_link,
            )
            server = DrainingServer(uvicorn_config(app, host, port, limits), app.state.node)
            sockets = [shared_socket(host, port)] if reuse_port else None
            settle_heap()
            log.warning(
                "threadline serving on http://%s:%d (pid %d; database connections: %s)",
                host,
                port,
                os.getpid(),
                connections_used(engine),
            )
            with _survive_sigterm():
                await server.serve(sockets=sockets)
        finally:
            await hub.stop()
            await sessions.models.aclose()
