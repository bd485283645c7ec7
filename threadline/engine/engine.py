"""`Engine`: connects to PostgreSQL, starts and inspects runs, and hosts an in-process worker."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from .. import db
from ..errors import ConfigurationError, ThreadlineError, UnknownWorkflow
from . import messages, queries, starting, store
from .dbretry import DATABASE_ERRORS, with_db_retry
from .journal import Journal
from .listener import Listener, Watcher
from .local_start import LocalStart
from .registry import Registry, Workflow, WorkflowFn, as_workflow, default_registry
from .runs import Event, Outcome, RunHandle, Waiters, unwrap
from .serialization import DEFAULT_MAX_PAYLOAD, dumps
from .worker import Queue, Worker

__all__ = ["Engine", "Event", "RunHandle", "Watcher", "engine_of", "pool_size_from_env"]

T = TypeVar("T")
log = logging.getLogger(__name__)

_OPEN_ENGINES: dict[asyncpg.Pool, Engine] = {}  # removed at close (pools take no weakref)


def engine_of(pool: asyncpg.Pool) -> Engine | None:
    """The open engine whose pool this is (so other layers can share its listener)."""
    return _OPEN_ENGINES.get(pool)


DEFAULT_POOL_SIZE = 10


def pool_size_from_env() -> int:
    """`THREADLINE_POOL_SIZE`: connections a process's pool holds at most (default 10)."""
    value = os.environ.get("THREADLINE_POOL_SIZE", "")
    if not value:
        return DEFAULT_POOL_SIZE
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError("THREADLINE_POOL_SIZE must be a whole number of at least 1")
    return int(value)


class Engine:
    """Durable workflows on PostgreSQL.

    `async with Engine() as engine:` uses `DATABASE_URL`, or starts the embedded server;
    applies pending migrations; and (unless `worker=False`) runs a worker in this process.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        registry: Registry | None = None,
        version: str | None = None,
        worker: bool = True,
        concurrency: int = 100,
        queues: Iterable[Queue] = (),
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        data_dir: Path | None = None,
        pool_size: int | None = None,
        direct_database_url: str | None = None,
        lease: float = 10.0,
        poll_interval: float = 0.5,
        recover_interval: float = 0.5,
        auto_migrate: bool = True,
    ) -> None:
        self.registry = registry or default_registry
        self._version = version or os.environ.get("THREADLINE_APP_VERSION")
        self._pinned_version: str | None = None
        self.queues = {q.name: q for q in queues}
        self.max_payload = max_payload
        self._database_url = database_url
        self._data_dir = data_dir
        self._pool_size = pool_size or pool_size_from_env()
        self._worker_options = {
            "concurrency": concurrency,
            "poll_interval": poll_interval,
            "recover_interval": recover_interval,
            "lease": lease,
        }
        self._want_worker = worker
        self._auto_migrate = auto_migrate
        self._pool: asyncpg.Pool | None = None
        self._journal: Journal | None = None
        self.worker: Worker | None = None
        self.worker_id = 0
        self.url = ""  # where queries go (a pooler, possibly)
        self.listen_url = ""  # PostgreSQL itself: LISTEN, session locks, migrations
        self._direct_url = direct_database_url
        self._waiters = Waiters()
        self._notifications = Listener(self._on_notify, self._heard_again)
        self._closers: list[Callable[[], Awaitable[None]]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The code version runs are pinned to: fixed when the engine opens (hashing the
        workflows' source on every start would cost more than the start itself)."""
        return self._pinned_version or self._version or self.registry.version()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ConfigurationError("the engine is not open: use `async with Engine() as e:`")
        return self._pool

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise ConfigurationError("the engine is not open: use `async with Engine() as e:`")
        return self._journal

    async def open(self) -> Engine:
        if self._pool is not None:
            raise ConfigurationError("this engine is already open")
        self._pinned_version = self._version or self.registry.version()
        self.url = await asyncio.to_thread(
            db.resolve_database_url, self._database_url, self._data_dir
        )
        self.listen_url = self._direct_url or db.direct_database_url() or self.url
        pooler = self.listen_url != self.url
        self._pool = await db.create_pool(self.url, max_size=self._pool_size, pooler=pooler)
        if pooler:  # migrations hold a session's advisory lock: PostgreSQL itself
            direct = await db.connect(self.listen_url)
            try:
                await self._migrate(direct)
            finally:
                await direct.close()
        async with self._pool.acquire() as conn:
            if not pooler:
                await self._migrate(conn)
            if self._want_worker:
                self.worker_id = await conn.fetchval(
                    queries.REGISTER_WORKER, socket.gethostname(), os.getpid(), self.version
                )
        self._journal = Journal(self._pool, self.worker_id)
        await self._notifications.connect(self.listen_url, self.worker_id)
        _OPEN_ENGINES[self._pool] = self
        if self._want_worker:
            self.worker = Worker(self, self.worker_id, **self._worker_options)  # type: ignore[arg-type]
            self.worker.start()
        return self

    async def _migrate(self, conn: db.Connection) -> None:
        if self._auto_migrate:
            await db.upgrade(conn)
            return
        waiting = await db.pending(conn)
        if waiting:
            raise ThreadlineError(
                f"{len(waiting)} migrations are pending: run `threadline db upgrade`"
            )

    async def close(self, drain_timeout: float = 30.0) -> None:
        if self._pool is not None:
            _OPEN_ENGINES.pop(self._pool, None)
        self._notifications.stop()
        if self.worker is not None:
            await self.worker.stop(drain_timeout)
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute(queries.STOP_WORKER, self.worker_id)
            except DATABASE_ERRORS:
                pass
        closers, self._closers = self._closers, []
        for closer in closers:
            try:
                await closer()
            except Exception:
                log.exception("a write-behind failed to flush at close")
        if self._journal is not None:
            await self._journal.drain()
            await self._journal.release()
        await self._notifications.close()  # the worker's lock goes with it: runs are handed back
        if self._pool is not None:
            await self._pool.close()
        # Forget this connection's state so the same Engine object can be opened again.
        self._pool = self._journal = self.worker = None
        self.worker_id = 0
        self._pinned_version = None
        self._waiters.clear()

    async def __aenter__(self) -> Engine:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- notifications ------------------------------------------------------------------------

    @property
    def _listener(self) -> asyncpg.Connection | None:
        """The listener connection (LISTEN, the worker's lock), while there is one."""
        return self._notifications.connection

    @property
    def listening(self) -> bool:
        """Whether notifications reach this process now."""
        return self._notifications.listening

    def hears(self, channel: str) -> bool:
        """Whether notifications on `channel` (the engine's, or one `watch`ed) reach this
        process now: a mirror of a table loads only then, lest it miss a change."""
        return self._notifications.hears(channel)

    def watch(self, channel: str, watcher: Watcher) -> None:
        """Call `watcher` with each notification on `channel`, and with None whenever some
        may have been missed (a lost listener, the engine closing). The engine LISTENs on
        `channel` from now on: at once when open, else when it opens, and again after every
        reconnection. This is how a layer above registers a channel it needs."""
        self._notifications.watch(channel, watcher)

    def before_close(self, flush: Callable[[], Awaitable[None]]) -> None:
        """Await `flush` when the engine closes, once its runs have drained and while its
        pool is still open (for writes kept behind, such as cache hit counters)."""
        self._closers.append(flush)

    def _on_notify(self, channel: str, payload: str) -> None:
        """A notification on one of the engine's own channels."""
        if channel == "threadline_work":
            if self.worker is not None:
                self.worker.wakeup.set()
            return
        run_ids = json.loads(payload)
        if channel == "threadline_done":
            for run_id in run_ids:
                self._waiters.resolve(run_id, None)
                self._waiters.signal_events(run_id)
        elif channel == "threadline_events":
            for run_id in run_ids:
                self._waiters.signal_events(run_id)
        elif channel == "threadline_cancel" and self.worker is not None:
            self.worker.cancel_local(run_ids)

    def _heard_again(self) -> None:
        """The listener is back: anything may have happened while it was deaf."""
        self._waiters.wake_all()
        if self.worker is not None:
            self.worker.wakeup.set()

    def run_finished(self, run_id: str, outcome: Outcome | None) -> None:
        """Called by the local worker once a run's outcome is durable (None: it was not)."""
        self._waiters.finished(run_id, outcome)

    def run_left(self, run_id: str) -> None:
        """Called by the local worker when a run stops running here, however it ended (done,
        waiting, cancelled, lost): whoever awaits its result reads it from the database again
        instead of waiting for a local outcome that will not come."""
        self._waiters.resolve(run_id, None)

    # -- starting and awaiting runs -----------------------------------------------------------

    def _workflow(self, target: WorkflowFn | str) -> Workflow:
        wf = as_workflow(target, self.registry)
        if isinstance(wf, str):
            known = ", ".join(sorted(self.registry.workflows)) or "none"
            raise UnknownWorkflow(f"no workflow named {wf!r} is registered (known: {known})")
        if self.registry.get(wf.name) is None:
            self.registry.add(wf)
        return wf

    async def start(
        self,
        workflow: WorkflowFn | str,
        *args: Any,
        run_id: str | None = None,
        queue: str | None = None,
        queue_key: str | None = None,
        parent_id: str | None = None,
        **kwargs: Any,
    ) -> RunHandle:
        """Start a run; idempotent on `run_id` (a second start returns the first run)."""
        wf = self._workflow(workflow)
        generated = run_id is None
        if run_id is None:
            run_id = os.urandom(12).hex()
        elif not run_id or len(run_id) > 200:
            raise ConfigurationError("run_id must be 1 to 200 characters")
        queue_name = queue or wf.queue
        input_json = dumps(
            {"args": list(args), "kwargs": kwargs}, f"the input of {wf.name}", self.max_payload
        )
        return await starting.start_run(
            self,
            wf,
            run_id,
            input_json,
            fresh=generated,
            queue=queue_name,
            queue_key=queue_key,
            parent_id=parent_id,
        )

    def local_start(self, workflow: WorkflowFn | str, *, queue: str) -> LocalStart | None:
        """A slot to start a run of `workflow` on limited `queue` here, by a statement of the
        caller's own (see `threadline.engine.local_start`), or None: no local worker, no
        room in it, or the queue is not limited (use `start`)."""
        wf = self._workflow(workflow)
        q = self.queues.get(queue)
        worker = self.worker
        if q is None or not q.limited or worker is None or not worker.try_reserve():
            return None
        return LocalStart(self, worker, wf, q)

    async def result(self, run_id: str, timeout: float | None = None) -> Any:
        """The run's result; raises WorkflowFailed / WorkflowCancelled / TimeoutError."""

        async with asyncio.timeout(timeout):
            while True:
                fut, outcome = self._waiters.expect(run_id)
                if outcome is None and (self.worker is None or run_id not in self.worker.active):
                    outcome = await self._fetch_outcome(run_id)  # not running here: ask
                if outcome is None:
                    try:
                        outcome = await asyncio.wait_for(asyncio.shield(fut), 5.0)
                    except TimeoutError:
                        outcome = None
                if outcome is not None:
                    return unwrap(run_id, outcome)

    async def _fetch_outcome(self, run_id: str) -> Outcome | None:
        return await self._query("run status", lambda conn: store.outcome(conn, run_id))

    # -- messages, cancellation, events -------------------------------------------------------

    async def send(
        self, run_id: str, topic: str, payload: Any, *, idempotency_key: str | None = None
    ) -> None:
        """Deliver a message to a run; a run waiting in `receive(topic)` wakes up."""
        body = dumps(payload, f"the message on {topic!r}", self.max_payload)

        async def attempt() -> bool:
            async with self.pool.acquire() as conn, conn.transaction():
                return await messages.deliver(conn, run_id, topic, body, idempotency_key)

        await with_db_retry(attempt, what="send")

    async def cancel(self, run_id: str) -> list[str]:
        """Cancel a run and its children; returns the ids that were still unfinished."""

        async def attempt() -> list[str]:
            async with self.pool.acquire() as conn, conn.transaction():
                return await messages.cancel_tree(conn, run_id)

        return await with_db_retry(attempt, what="cancel")

    def events(self, run_id: str, after_seq: int = 0, follow: bool = True) -> AsyncIterator[Event]:
        """The run's events after `after_seq`, in order; with `follow`, live until it ends."""

        def read(after: int) -> Awaitable[tuple[list[Any], str | None]]:
            return self._query("run events", lambda conn: store.read_events(conn, run_id, after))

        def exists() -> Awaitable[bool]:
            return self._query("run lookup", lambda conn: store.exists(conn, run_id))

        return self._waiters.events(run_id, after_seq, follow, read, exists)

    async def _query(self, what: str, query: Callable[[Any], Awaitable[T]]) -> T:
        """`query` on a pooled connection, retried through transient database failures."""

        async def attempt() -> T:
            async with self.pool.acquire() as conn:
                return await query(conn)

        return await with_db_retry(attempt, what=what)

    # -- inspection ---------------------------------------------------------------------------

    async def list_runs(self, **filters: Any) -> list[store.RunInfo]:
        return await self._query("list runs", lambda conn: store.list_runs(conn, **filters))

    async def unfinished_runs(self, queue: str, key: str, *, started: bool = False) -> list[str]:
        """The ids of a queue key's runs not finished yet, oldest first (`started`: only
        those running or waiting, not those still pending)."""
        statuses = ("running", "waiting") if started else ("pending", "running", "waiting")
        return await self._query(
            "list unfinished runs",
            lambda conn: store.unfinished_runs(conn, queue, key, statuses),
        )

    async def get_run(self, run_id: str) -> store.RunInfo:
        return await self._query("get run", lambda conn: store.get_run(conn, run_id))

    async def get_steps(self, run_id: str) -> list[store.StepInfo]:
        return await self._query("get steps", lambda conn: store.get_steps(conn, run_id))
