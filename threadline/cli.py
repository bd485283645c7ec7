"""`threadline ...`: the command line."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import logging
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import db
from .db.options import database_url_option as _db_url
from .engine import Engine, Registry
from .errors import ThreadlineError
from .ledger import GROUPINGS, CostRow, Ledger
from .loop import run as run_loop
from .loop import settle_heap

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)

_app = click.option(
    "--app",
    "app_path",
    envvar="THREADLINE_APP",
    default=None,
    metavar="MODULE:OBJECT",
    help="Where your workflows live: an Engine or a Registry object. Default: $THREADLINE_APP.",
)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return run_loop(coro)
    except ThreadlineError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)


def _exit_on_sigterm() -> None:
    """Until the event loop takes SIGTERM over, SIGTERM exits through SystemExit: its default
    action would skip the exit handlers, and with them the stop of the embedded database that
    this process may be the last user of."""

    def exit_(signum: int, frame: FrameType | None) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, exit_)


def load_app(path: str | None, database_url: str | None, **options: Any) -> Engine:
    """Import MODULE:OBJECT and make an Engine of it (a Registry gets a new Engine)."""
    if not path:
        return Engine(database_url, **options)
    module_name, _, attr = path.partition(":")
    if not attr:
        raise click.BadParameter(
            "expected MODULE:OBJECT, e.g. myapp.workflows:engine", param_hint="--app"
        )
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="--app"
        ) from exc
    obj = getattr(module, attr, None)
    if isinstance(obj, Engine):
        if database_url:
            obj._database_url = database_url
        for key, value in options.items():
            if key == "worker":
                obj._want_worker = value
            elif key == "concurrency":
                obj._worker_options["concurrency"] = value
        return obj
    if isinstance(obj, Registry):
        return Engine(database_url, registry=obj, **options)
    raise click.BadParameter(f"{path} is not an Engine or a Registry", param_hint="--app")


async def _with_engine(engine: Engine, fn: Callable[[Engine], Awaitable[T]]) -> T:
    async with engine:
        return await fn(engine)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what threadline does.")
def main(verbose: bool) -> None:
    """threadline: durable, cost-aware LLM conversations and workflows on PostgreSQL."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# -- db ---------------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Database schema: apply and list migrations."""


@db_group.command("upgrade")
@_db_url
def db_upgrade(database_url: str | None) -> None:
    """Apply pending migrations (safe to run from many processes at once)."""

    async def go() -> None:
        # Under a session's advisory lock: PostgreSQL itself, not a pooler in transaction mode.
        url = db.direct_database_url() or db.resolve_database_url(database_url)
        conn = await db.connect(url)
        try:
            done = await db.upgrade(conn)
        finally:
            await conn.close()
        if done:
            for m in done:
                console.print(f"applied {m.version:04d}_{m.name}")
        else:
            console.print("the schema is up to date")

    _run(go())


@db_group.command("status")
@_db_url
def db_status(database_url: str | None) -> None:
    """List applied and pending migrations."""

    async def go() -> None:
        url = db.resolve_database_url(database_url)
        conn = await db.connect(url)
        try:
            states = await db.status(conn)
        finally:
            await conn.close()
        table = Table("migration", "name", "state")
        for s in states:
            state = "pending" if s.applied_at is None else f"applied {s.applied_at:%Y-%m-%d %H:%M}"
            if not s.known:
                state += " (unknown to this version of threadline)"
            table.add_row(f"{s.version:04d}", s.name, state)
        console.print(table)

    _run(go())


# -- worker -----------------------------------------------------------------------------------


@main.command()
@_app
@_db_url
@click.option("--concurrency", default=100, show_default=True, help="Runs executed at once.")
def worker(app_path: str | None, database_url: str | None, concurrency: int) -> None:
    """Run a worker: claim runs, execute them, recover those of dead workers.

    SIGTERM or Ctrl-C drains: no new runs are claimed, running ones finish (up to 30 s),
    and whatever is left is handed back for another worker.
    """
    _exit_on_sigterm()
    engine = load_app(app_path, database_url, concurrency=concurrency)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with engine:
            names = ", ".join(sorted(engine.registry.workflows)) or "none"
            err_console.print(
                f"worker {engine.worker_id} ready (version {engine.version}); workflows: {names}"
            )
            settle_heap()
            await stop.wait()
            err_console.print("draining...")

    _run(go())


# -- runs -------------------------------------------------------------------------------------


@main.group()
def runs() -> None:
    """Inspect and cancel workflow runs."""


@runs.command("list")
@_db_url
@click.option(
    "--status",
    type=click.Choice(["pending", "running", "waiting", "succeeded", "failed", "cancelled"]),
)
@click.option("--workflow", default=None, help="Only runs of this workflow.")
@click.option("--limit", default=50, show_default=True)
def runs_list(
    database_url: str | None, status: str | None, workflow: str | None, limit: int
) -> None:
    """The most recent runs."""
    engine = Engine(database_url, worker=False)
    found = _run(
        _with_engine(engine, lambda e: e.list_runs(status=status, workflow=workflow, limit=limit))
    )
    table = Table("run", "workflow", "status", "created", "finished", "recoveries")
    for r in found:
        table.add_row(
            escape(r.id),
            escape(r.workflow),
            r.status,
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
            f"{r.finished_at:%H:%M:%S}" if r.finished_at else "",
            str(r.recoveries),
        )
    console.print(table)


@runs.command("show")
@_db_url
@click.argument("run_id")
def runs_show(database_url: str | None, run_id: str) -> None:
    """One run: its input, steps, outcome and events."""

    async def go(e: Engine) -> None:
        run = await e.get_run(run_id)
        steps = await e.get_steps(run_id)
        events = [ev async for ev in e.events(run_id, follow=False)]
        console.print(
            f"[bold]{escape(run.id)}[/bold]  {escape(run.workflow)}  [bold]{run.status}[/bold]"
        )
        console.print(
            f"version {run.app_version}  queue {run.queue}"
            + (f" key {run.queue_key}" if run.queue_key else "")
            + (f"  parent {run.parent_id}" if run.parent_id else ""),
            markup=False,
        )
        console.print(f"input  {json.dumps(run.input)}", markup=False)
        if run.status == "succeeded":
            console.print(f"output {json.dumps(run.output)}", markup=False)
        if run.error:
            error = f"{run.error.get('type')}: {run.error.get('message')}"
            console.print(f"[red]error  {escape(error)}[/red]")
        if run.status == "waiting":
            console.print(f"waiting for {run.waiting_topic or 'timer'} until {run.wake_at}")
        table = Table("step", "name", "result", "at", title="steps")
        for s in steps:
            shown = json.dumps(s.error if s.error else s.output)
            table.add_row(
                str(s.step_no),
                escape(s.name),
                escape(shown[:80]),
                f"{s.created_at:%H:%M:%S.%f}"[:-3],
            )
        console.print(table)
        if events:
            table = Table("seq", "kind", "data", title="events")
            for ev in events:
                table.add_row(str(ev.seq), escape(ev.kind), escape(json.dumps(ev.data)[:80]))
            console.print(table)

    _run(_with_engine(Engine(database_url, worker=False), go))


@runs.command("cancel")
@_db_url
@click.argument("run_id")
def runs_cancel(database_url: str | None, run_id: str) -> None:
    """Cancel a run and its children (effective at their next step)."""
    ids = _run(_with_engine(Engine(database_url, worker=False), lambda e: e.cancel(run_id)))
    console.print(
        f"cancelled {len(ids)} run(s)"
        + (f": {', '.join(ids)}" if ids else " (it had already finished)")
    )


# -- start ------------------------------------------------------------------------------------


@main.command()
@_app
@_db_url
@click.argument("workflow")
@click.option(
    "--input",
    "input_json",
    default="[]",
    show_default=True,
    help="Arguments as JSON: a list (positional) or an object (keywords).",
)
@click.option(
    "--run-id", default=None, help="Idempotency key: a second start returns the first run."
)
@click.option("--queue", default=None)
@click.option("--queue-key", default=None, help="Per-key concurrency group (e.g. a tenant).")
@click.option("--wait/--no-wait", default=False, help="Wait for the result and print it.")
def start(
    app_path: str | None,
    database_url: str | None,
    workflow: str,
    input_json: str,
    run_id: str | None,
    queue: str | None,
    queue_key: str | None,
    wait: bool,
) -> None:
    """Start WORKFLOW (its registered name) with --input; prints the run id."""
    try:
        params = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from exc
    args, kwargs = (params, {}) if isinstance(params, list) else ([], params)
    if not isinstance(kwargs, dict):
        raise click.BadParameter("give a JSON list or object", param_hint="--input")
    engine = load_app(app_path, database_url, worker=wait)

    async def go(e: Engine) -> None:
        handle = await e.start(
            workflow, *args, run_id=run_id, queue=queue, queue_key=queue_key, **kwargs
        )
        console.print(handle.run_id if handle.created else f"{handle.run_id} (already started)")
        if wait:
            console.print_json(json.dumps(await handle.result()))

    _run(_with_engine(engine, go))


# -- costs ------------------------------------------------------------------------------------


def parse_since(value: str | None) -> datetime | None:
    """An ISO date or time (UTC unless it says otherwise), or a span back from now: 30m, 24h, 7d."""
    if value is None:
        return None
    span = re.fullmatch(r"(\d+)([mhdw])", value.strip())
    if span:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[span[2]]
        return datetime.now(UTC) - timedelta(**{unit: int(span[1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO date/time nor a span like 7d", param_hint="--since"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@main.command()
@_db_url
@click.option("--by", type=click.Choice(sorted(GROUPINGS)), default="model", show_default=True)
@click.option("--since", default=None, help="ISO date/time, or a span back from now: 24h, 7d.")
@click.option("--until", default=None, help="ISO date/time (exclusive).")
@click.option("--tenant", default=None, help="Only this tenant's calls.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def costs(
    database_url: str | None,
    by: str,
    since: str | None,
    until: str | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """What LLM calls cost, from the ledger, grouped --by model, day, session, tenant, ..."""
    start, end = parse_since(since), parse_since(until)

    async def go(e: Engine) -> list[CostRow]:
        return await Ledger(e.pool).report(by, since=start, until=end, tenant=tenant)

    rows = _run(_with_engine(Engine(database_url, worker=False), go))
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], default=str))
        return
    table = Table(by, "calls", "errors", "cached", "input tok", "output tok", "cost $", "saved $")
    for r in rows:
        cost = f"{r.cost_usd:.6f}" + (
            f" (+{r.unpriced_calls} unpriced)" if r.unpriced_calls else ""
        )
        table.add_row(
            r.key,
            str(r.calls),
            str(r.errors),
            str(r.cached),
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
            cost,
            f"{r.saved_usd:.6f}",
        )
    console.print(table)
    if not rows:
        console.print("no LLM calls recorded in this period")


@main.command()
@_db_url
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Serve only; turns run on `threadline worker`s.")
@click.option(
    "--concurrency",
    type=int,
    default=None,
    help="Turns and runs this process's worker executes at once [default: 1000; a turn"
    " mostly waits on its model].",
)
@click.option(
    "--agents",
    "agents_path",
    default=None,
    metavar="MODULE:OBJECT",
    help="A list of Agents to serve. Default: the demo bots (memoir, support).",
)
@click.option(
    "--open-dashboard",
    is_flag=True,
    help="Serve the dashboard without a login: anyone who reaches the server reads every"
    " conversation and its costs.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes on the port (SO_REUSEPORT), each with its own loop, pool and worker.",
)
@click.option("--child", is_flag=True, hidden=True)  # one of --processes N: shares the port
def serve(
    database_url: str | None,
    host: str,
    port: int,
    no_worker: bool,
    concurrency: int | None,
    agents_path: str | None,
    open_dashboard: bool,
    processes: int,
    child: bool,
) -> None:
    """Serve the chat API, the widget and the demo page, with a worker in the same process."""
    if processes > 1 and not child:
        from .web.processes import serve_processes

        args = ["--host", host, "--port", str(port)]
        args += ["--no-worker"] if no_worker else []
        args += ["--concurrency", str(concurrency)] if concurrency else []
        args += ["--agents", agents_path] if agents_path else []
        args += ["--open-dashboard"] if open_dashboard else []
        console.print(f"threadline on [bold]http://{host}:{port}[/bold], {processes} processes")
        code = serve_processes(
            processes,
            args,
            database_url=database_url,
            host=host,
            port=port,
            open_dashboard=open_dashboard,
        )
        sys.exit(code)
    _exit_on_sigterm()
    from .web import serve as run_server

    agents = _load_object(agents_path, "--agents") if agents_path else None
    if agents is None:
        from .demo import AGENTS

        agents = AGENTS
    if not child:
        console.print(f"threadline on [bold]http://{host}:{port}[/bold] (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        _run(
            run_server(
                agents,
                host=host,
                port=port,
                database_url=database_url,
                worker=not no_worker,
                concurrency=concurrency,
                open_dashboard=open_dashboard,
                reuse_port=child,
                login_link=not child,
            )
        )


@main.command()
@click.argument("agent")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The server.")
def chat(agent: str, url: str) -> None:
    """Chat with AGENT on a running `threadline serve`, in the terminal (Ctrl-D ends)."""
    from .web.terminal import run as run_chat

    try:
        run_chat(url, agent)
    except (OSError, RuntimeError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)
    except KeyboardInterrupt:
        pass


def _load_object(path: str, hint: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not attr:
        raise click.BadParameter("expected MODULE:OBJECT", param_hint=hint)
    sys.path.insert(0, ".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {path!r}: {exc}", param_hint=hint) from exc


@main.command()
@_db_url
def demo(database_url: str | None) -> None:
    """Run the example pipeline on the embedded database and show its progress."""
    from .examples import pipeline

    with contextlib.suppress(KeyboardInterrupt):
        _run(pipeline.main(database_url))


@main.command()
@click.argument("name", type=click.Path(path_type=Path))
def new(name: Path) -> None:
    """Start a bot project in NAME: agents, knowledge, a host page and tests that pass."""
    from .scaffold import create_project

    try:
        written = create_project(name)
    except ThreadlineError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)
    root = name.expanduser().resolve()
    for path in written:
        console.print(f"  created {escape(str(name / path.relative_to(root)))}")
    console.print(
        f"\nNext: cd {name} && pip install -e '.[test]' && python -m pytest\n"
        "then: threadline serve --agents agents:AGENTS",
        markup=False,
    )


from .rag.cli import cache_group, ingest  # noqa: E402

main.add_command(ingest)
main.add_command(cache_group)

from .ledger.cli import budgets_group  # noqa: E402

main.add_command(budgets_group)

from .web.keys_cli import audit_command, keys_group  # noqa: E402

main.add_command(keys_group)
main.add_command(audit_command)


if __name__ == "__main__":  # pragma: no cover
    main()
