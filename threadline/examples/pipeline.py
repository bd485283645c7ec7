"""A durable batch pipeline: classify transactions in child workflows, wait for approval.

It shows what a data team's pipeline looks like on threadline: a parent workflow fans work
out to child workflows on a queue with a concurrency limit, each step retried and journaled;
progress is an event stream; the parent waits durably for an approval message, then sleeps
durably before reporting. Kill it at any point and run it again: finished steps are not
redone, and the run picks up where it stopped.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..engine import Engine, Queue, Registry, WorkflowContext, step, workflow

registry = Registry()
console = Console()

TRANSACTIONS = [
    ("Coffee Corner", 4.20),
    ("City Rail monthly pass", 89.00),
    ("Grocer & Sons", 63.15),
    ("Cloud hosting invoice", 240.00),
    ("Corner Bakery", 7.80),
    ("Airline ticket LIS", 310.40),
    ("Bookshop", 22.50),
    ("Electricity bill", 71.30),
    ("Taxi", 18.90),
    ("Gym membership", 35.00),
    ("Pharmacy", 12.60),
    ("Hotel Porto", 180.00),
]
_RULES = {
    "travel": ("rail", "airline", "taxi", "hotel"),
    "food": ("coffee", "grocer", "bakery"),
    "utilities": ("electricity", "hosting"),
    "health": ("pharmacy", "gym"),
}


@step(retries=3)
async def classify(description: str) -> str:
    """Stands in for an LLM call: slow, and now and then it fails and is retried."""
    await asyncio.sleep(0.05)
    if random.random() < 0.15:
        raise ConnectionError("classifier unavailable")
    lowered = description.lower()
    return next((cat for cat, words in _RULES.items() if any(w in lowered for w in words)), "other")


@workflow(registry=registry, name="classify_one", queue="classifier")
async def classify_one(ctx: WorkflowContext, description: str, amount: float) -> dict[str, Any]:
    category = await classify(description)
    return {"description": description, "amount": amount, "category": category}


@workflow(registry=registry, name="monthly_report")
async def monthly_report(ctx: WorkflowContext, items: list[list[Any]]) -> dict[str, Any]:
    children = [await ctx.start_child(classify_one, d, a) for d, a in items]
    totals: dict[str, float] = {}
    for done, child in enumerate(children, 1):
        row = await ctx.wait_child(child)
        totals[row["category"]] = round(totals.get(row["category"], 0.0) + row["amount"], 2)
        await ctx.emit("progress", {"done": done, "total": len(children)})
    await ctx.emit("awaiting_approval", totals)
    approval = await ctx.receive("approval", timeout=30)
    await ctx.sleep(1.0)  # durable: the run waits in the database, not in memory
    return {"totals": totals, "approved_by": approval or "nobody (timed out)"}


engine = Engine(registry=registry, queues=[Queue("classifier", concurrency=4)])


async def main(database_url: str | None = None) -> None:
    if database_url:
        engine._database_url = database_url
    async with engine:
        items = [list(t) for t in TRANSACTIONS]
        handle = await engine.start(monthly_report, items, run_id="demo-monthly-report")
        if not handle.created and await handle.status() in ("succeeded", "failed", "cancelled"):
            handle = await engine.start(monthly_report, items)  # the fixed one already ended
        console.print(
            f"run [bold]{handle.run_id}[/bold]"
            + ("" if handle.created else " (resuming the run already in the database)")
        )
        with Progress(
            TextColumn("classifying"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("", total=len(TRANSACTIONS))
            async for event in handle.events():
                if event.kind == "progress":
                    progress.update(task, completed=event.data["done"])
                elif event.kind == "awaiting_approval":
                    break
        console.print("all classified; sending the approval message")
        if await handle.status() not in ("succeeded", "failed", "cancelled"):
            await engine.send(
                handle.run_id, "approval", "finance@example.com", idempotency_key="demo-approval"
            )
        result = await handle.result()
        for category, total in sorted(result["totals"].items()):
            console.print(f"  {category:<10} {total:>8.2f}")
        console.print(f"approved by {result['approved_by']}")
        console.print(f"see every step with: threadline runs show {handle.run_id}")
