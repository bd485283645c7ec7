"""`threadline serve` and `chat`: the server (web, widget, API and a worker) and a terminal
client of it."""

from __future__ import annotations

import contextlib
import sys

import click
from rich.markup import escape

from ..db.options import database_url_option as _db_url
from .common import console, err_console, exit_on_sigterm, load_object, run_coroutine

__all__ = ["chat", "serve"]


@click.command()
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
        from ..web.processes import serve_processes

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
    exit_on_sigterm()
    from ..web import serve as run_server

    agents = load_object(agents_path, "--agents") if agents_path else None
    if agents is None:
        from ..demo import AGENTS

        agents = AGENTS
    if not child:
        console.print(f"threadline on [bold]http://{host}:{port}[/bold] (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        run_coroutine(
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


@click.command()
@click.argument("agent")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The server.")
def chat(agent: str, url: str) -> None:
    """Chat with AGENT on a running `threadline serve`, in the terminal (Ctrl-D ends)."""
    from ..web.terminal import run as run_chat

    try:
        run_chat(url, agent)
    except (OSError, RuntimeError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)
    except KeyboardInterrupt:
        pass
