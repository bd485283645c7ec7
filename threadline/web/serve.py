"""`threadline serve`: web server and worker in one process, on the embedded database unless
`DATABASE_URL` says otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path

import uvicorn

from ..agents import Agent
from ..db.embedded import default_data_dir
from ..engine import Engine
from ..loop import settle_heap
from ..sessions import Sessions
from .app import create_app
from .auth import Auth
from .hub import Hub

log = logging.getLogger(__name__)

# A turn spends nearly all its time waiting on the model's stream, so one process can run
# many more of them at once than CPU-bound workflow runs (the engine's default is 100).
SERVE_CONCURRENCY = 1000


def load_secret(data_dir: Path | None) -> str:
    """$THREADLINE_SECRET, else one kept in the data directory (tokens survive restarts)."""
    configured = os.environ.get("THREADLINE_SECRET")
    if configured:
        return configured
    path = (data_dir or default_data_dir()) / "secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def auth_from_env(data_dir: Path | None = None) -> Auth:
    origins = os.environ.get("THREADLINE_ALLOWED_ORIGINS", "")
    return Auth(
        secret=load_secret(data_dir),
        admin_key=os.environ.get("THREADLINE_ADMIN_KEY") or None,
        allowed_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
    )


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
) -> None:
    """`concurrency`: turns and runs the worker executes at once (default 1000)."""
    engine = engine or Engine(
        database_url, worker=worker, concurrency=concurrency or SERVE_CONCURRENCY
    )
    sessions = Sessions(engine, agents)
    async with engine:
        hub = Hub(engine.url)
        await hub.start()
        try:
            auth = auth_from_env()
            local = host in ("127.0.0.1", "localhost", "::1")
            app = create_app(sessions, hub, auth, open_dashboard=local and not auth.admin_key)
            config = uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                # Frames are small JSON deltas: compressing each costs more than it saves.
                ws_per_message_deflate=False,
            )
            server = uvicorn.Server(config)
            settle_heap()
            log.warning("threadline serving on http://%s:%d", host, port)
            with _survive_sigterm():
                await server.serve()
        finally:
            await hub.stop()
            await sessions.llm.aclose()
