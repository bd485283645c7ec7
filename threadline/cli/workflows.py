"""`threadline worker`, `runs ...`, `start` and `demo`: durable workflows run, inspected,
cancelled and started from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal

import click
from rich.markup import escape
from rich.table import Table

from ..db.options import database_url_option as _db_url
from ..engine import Engine
from ..loop import settle_heap
from .common import (
    app_option,
    console,
    err_console,
    exit_on_sigterm,
    load_app,
    run_coroutine,
    with_engine,
)

__all__ = ["demo", "runs", "start", "worker"]


@click.command()
@app_option
@_db_url
@click.option("--concurrency", default=100, show_default=True, help="Runs executed at once.")
def worker(app_path: str | None, database_url: str | None, concurrency: int) -> None:
    """Run a worker: claim runs, execute them, recover those of dead workers.

    SIGTERM or Ctrl-C drains: no new runs are claimed, running ones finish (up to 30 s),
    and whatever is left is handed back for another worker.
    """
    exit_on_sigterm()
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

    run_coroutine(go())


@click.group()
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
    found = run_coroutine(
        with_engine(engine, lambda e: e.list_runs(status=status, workflow=workflow, limit=limit))
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

    run_coroutine(with_engine(Engine(database_url, worker=False), go))


@runs.command("cancel")
@_db_url
@click.argument("run_id")
def runs_cancel(database_url: str | None, run_id: str) -> None:
    """Cancel a run and its children (effective at their next step)."""
    ids = run_coroutine(with_engine(Engine(database_url, worker=False), lambda e: e.cancel(run_id)))
    console.print(
        f"cancelled {len(ids)} run(s)"
        + (f": {', '.join(ids)}" if ids else " (it had already finished)")
    )


@click.command()
@app_option
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

    run_coroutine(with_engine(engine, go))


@click.command()
@_db_url
def demo(database_url: str | None) -> None:
    """Run the example pipeline on the embedded database and show its progress."""
    from ..examples import pipeline

    with contextlib.suppress(KeyboardInterrupt):
        run_coroutine(pipeline.main(database_url))
