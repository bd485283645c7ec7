"""`threadline ingest` and `threadline cache inspect|test|purge`."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..db.options import database_url_option as _db_url
from ..engine import Engine
from ..errors import ThreadlineError
from ..loop import run as run_loop
from .cache import CacheScope, SemanticCache
from .documents import DocumentStore, IngestResult, files_under
from .embedder import Embedder, HashEmbedder, default_embedder

T = TypeVar("T")
console = Console()

_embedder = click.option(
    "--embedder",
    type=click.Choice(["minilm", "hash"]),
    default="minilm",
    show_default=True,
    help="minilm: all-MiniLM-L6-v2 (offline); hash: the model-free test embedder.",
)


def _pick(name: str) -> Embedder:
    return HashEmbedder() if name == "hash" else default_embedder()


def _run(database_url: str | None, fn: Callable[[Engine], Awaitable[T]]) -> T:
    async def go() -> T:
        async with Engine(database_url, worker=False) as engine:
            return await fn(engine)

    try:
        return run_loop(go())
    except ThreadlineError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        sys.exit(1)


@click.command()
@_db_url
@_embedder
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--collection", required=True, help="The collection to add the documents to.")
@click.option("--tenant", default=None, help="The tenant owning the collection.")
def ingest(
    database_url: str | None, embedder: str, path: Path, collection: str, tenant: str | None
) -> None:
    """Ingest PATH (a file or a folder of .md, .txt, .html, .pdf) into a collection.

    Unchanged files are skipped; changed ones are re-embedded and the cached answers built
    from them are dropped."""
    files = list(files_under(path))

    async def go(engine: Engine) -> list[IngestResult]:
        store = DocumentStore(engine.pool, _pick(embedder))
        target = await store.collection(collection, tenant=tenant)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(f"ingesting into {collection}", total=len(files))
            return await store.ingest_path(
                target, path, on_progress=lambda r: progress.advance(task)
            )

    results = _run(database_url, go)
    counts = {s: sum(r.status == s for r in results) for s in ("added", "updated", "unchanged")}
    chunks = sum(r.chunks for r in results)
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()) + f"; {chunks} chunks written")


@click.group("cache")
def cache_group() -> None:
    """The semantic cache: inspect entries, hit-test a question, purge."""


def _scope(
    agent: str,
    prompt_version: str,
    tool_version: str,
    model_policy: str,
    tenant: str | None,
    shared: bool,
) -> CacheScope:
    return CacheScope(agent, prompt_version, tool_version, model_policy, tenant, shared)


_scope_options = [
    click.option("--agent", required=True),
    click.option("--prompt-version", default="", show_default=True),
    click.option("--tool-version", default="", show_default=True),
    click.option("--model-policy", default="", show_default=True),
    click.option("--tenant", default=None),
    click.option("--shared", is_flag=True, help="The scope is shared by all tenants."),
]


def _with_scope(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_scope_options):
        fn = option(fn)
    return fn


@cache_group.command("inspect")
@_db_url
@click.option("--tenant", default=None)
@click.option("--agent", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def cache_inspect(
    database_url: str | None, tenant: str | None, agent: str | None, limit: int, as_json: bool
) -> None:
    """The newest entries, with their hits and savings."""

    async def go(engine: Engine) -> list[Any]:
        cache = SemanticCache(engine.pool, embedder=HashEmbedder())  # no model needed to list
        return await cache.entries(tenant=tenant, agent=agent, limit=limit)

    entries = _run(database_url, go)
    if as_json:
        rows = [
            {
                "id": e.id,
                "scope": e.scope.to_json(),
                "prompt": e.prompt,
                "answer": e.answer,
                "model": e.model,
                "cost_usd": str(e.cost_usd),
                "hits": e.hits,
                "saved_usd": str(e.saved_usd),
                "created_at": e.created_at.isoformat(),
                "expires_at": e.expires_at.isoformat() if e.expires_at else None,
                "documents": e.documents,
            }
            for e in entries
        ]
        click.echo(json.dumps(rows))
        return
    table = Table("id", "agent", "tenant", "prompt", "hits", "saved $", "expires", "docs")
    for e in entries:
        table.add_row(
            str(e.id),
            e.scope.agent,
            e.scope.tenant or "*",
            e.prompt[:60],
            str(e.hits),
            f"{e.saved_usd:.6f}",
            f"{e.expires_at:%Y-%m-%d %H:%M}" if e.expires_at else "",
            str(len(e.documents)),
        )
    console.print(table)


@cache_group.command("test")
@_db_url
@_embedder
@_with_scope
@click.argument("question")
@click.option("--false-hit-rate", default=0.05, show_default=True)
def cache_test(
    database_url: str | None, embedder: str, question: str, false_hit_rate: float, **scope: Any
) -> None:
    """Would QUESTION hit in this scope? Shows the candidates, scores and threshold
    (does not count as a hit)."""

    async def go(engine: Engine) -> Any:
        cache = SemanticCache(engine.pool, embedder=_pick(embedder), false_hit_rate=false_hit_rate)
        return await cache.decide(question, _scope(**scope))

    decision = _run(database_url, go)
    table = Table(
        "entry", "cached question", "cosine", "score", title=f"threshold {decision.threshold:.3f}"
    )
    for candidate, score in decision.candidates:
        table.add_row(
            str(candidate.entry_id),
            candidate.prompt[:70],
            f"{candidate.cosine:.3f}",
            f"{score:.3f}",
        )
    console.print(table)
    console.print(
        f"lookup {decision.latency_ms:.1f} ms, of which the verifier {decision.verify_ms:.1f} ms"
    )
    hit = decision.hit
    if hit is None:
        console.print("[bold]miss[/bold]")
    else:
        kind = "exact" if hit.exact else f"score {hit.score:.3f}"
        console.print(
            f"[bold green]hit[/bold green] entry {hit.answer.entry_id} ({kind}): "
            f"{hit.answer.answer[:200]}"
        )


@cache_group.command("purge")
@_db_url
@click.option("--tenant", default=None)
@click.option("--agent", default=None)
@click.option("--id", "entry_id", type=int, default=None)
@click.option("--expired", is_flag=True, help="Only entries past their TTL.")
@click.option("--all", "everything", is_flag=True, help="Purge every entry (no filter given).")
def cache_purge(
    database_url: str | None,
    tenant: str | None,
    agent: str | None,
    entry_id: int | None,
    expired: bool,
    everything: bool,
) -> None:
    """Delete entries by tenant, agent, id, or expiry (--all for everything)."""
    if not (tenant or agent or entry_id or expired or everything):
        raise click.UsageError("give a filter (--tenant, --agent, --id, --expired) or --all")

    async def go(engine: Engine) -> int:
        cache = SemanticCache(engine.pool, embedder=HashEmbedder())
        return await cache.purge(
            tenant=tenant, agent=agent, entry_id=entry_id, expired_only=expired
        )

    console.print(f"purged {_run(database_url, go)} entries")
