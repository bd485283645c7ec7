"""200 concurrent LLM calls against a $0.50 budget: strict reservations vs check-after-the-call.

Every call goes through the Anthropic SDK to the local Anthropic test server (the one the tests
use, speaking the real wire protocol), asks Claude Sonnet 4.5 about an ~800-token prompt with
`max_tokens=512`, and is answered with realistic usage: 800 input tokens, 200-299 output tokens
(about $0.006 a call), after 20 ms. Both runs record every call in the ledger; the figures are
the ledger's totals.

- **strict**: threadline's router. Each call reserves its worst case (the prompt's provable
  token bound and `max_tokens`, at Sonnet's highest prices) against the budget before it is
  made, waits for calls in flight to settle when the money they hold is what it lacks, and is
  refused (`BudgetExceeded`) when even its smallest useful call no longer fits.
- **naive**: what a budget check without reservations does: before each call, read what the
  ledger says was spent, and go ahead if it is under the limit. All 200 calls check before
  any has finished, so all of them go ahead.

    python benchmarks/budget_race.py            # a table
    python benchmarks/budget_race.py --json     # {"limit_usd": ..., "strict_spent_usd": ..., ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.llm.servers import anthropic as anthropic_server  # noqa: E402
from tests.llm.servers.base import Script, start_server  # noqa: E402
from threadline import Engine, db  # noqa: E402
from threadline.ledger import BudgetExceeded, Ledger, Scope  # noqa: E402
from threadline.llm import Message  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402
from threadline.router import ModelPolicy, Models  # noqa: E402

MODEL = "anthropic:claude-sonnet-4-5"
PROMPT = [Message.user("Please classify this transaction and explain why. " * 64)]
SPENT = "SELECT coalesce(sum(cost_usd), 0) FROM threadline.llm_calls WHERE tenant = $1"


def script_replies(script: Script, calls: int) -> None:
    for n in range(calls):
        script.reply(input_tokens=800, output_tokens=200 + n % 100, delay=0.02)


async def strict(router: Models, calls: int, limit: Decimal) -> int:
    await router.ledger.budgets.set("tenant:strict", usd=limit)

    async def call() -> bool:
        try:
            await router.request(
                ModelPolicy(MODEL), PROMPT, scope=Scope(tenant="strict"), max_tokens=512
            )
        except BudgetExceeded:
            return False
        return True

    return sum(await asyncio.gather(*(call() for _ in range(calls))))


async def naive(llm: Models, calls: int, limit: Decimal) -> int:
    async def call() -> bool:
        async with llm.ledger.pool.acquire() as conn:
            spent: Decimal = await conn.fetchval(SPENT, "naive")
        if spent >= limit:
            return False
        await llm.request(MODEL, PROMPT, scope=Scope(tenant="naive"), max_tokens=512)
        return True

    return sum(await asyncio.gather(*(call() for _ in range(calls))))


async def spent(ledger: Ledger, tenant: str) -> Decimal:
    await ledger.drain()
    async with ledger.pool.acquire() as conn:
        total: Decimal = await conn.fetchval(SPENT, tenant)
    return total


async def main(args: argparse.Namespace) -> dict[str, Any]:
    url = args.database_url or db.start_embedded(db.temporary_data_dir("tl-bench-"))
    script = Script()
    server = start_server(anthropic_server.create_app(script), script)
    limit = Decimal(args.limit)
    options = {"anthropic": {"api_key": "k", "base_url": server.url}}
    result: dict[str, Any] = {"limit_usd": float(limit), "calls": args.calls}
    try:
        async with Engine(url, worker=False) as engine:
            ledger = Ledger(engine.pool)
            llm = Models(ledger, model_options=options, budget_wait=60.0)
            script.reply()
            await llm.request(MODEL, PROMPT, scope=Scope(tenant="warm-up"))  # loads the SDK
            for name in ("strict", "naive"):
                script_replies(script, args.calls)
                started = time.perf_counter()
                if name == "strict":
                    answered = await strict(llm, args.calls, limit)
                else:
                    answered = await naive(llm, args.calls, limit)
                result[f"{name}_seconds"] = round(time.perf_counter() - started, 2)
                result[f"{name}_spent_usd"] = float(await spent(ledger, name))
                result[f"{name}_answered"] = answered
            await llm.aclose()
            await ledger.close()
    finally:
        server.stop()
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", default=None, help="default: an embedded PostgreSQL")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--limit", default="0.50", help="the budget in USD")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # Sonnet 4.5's notice
    result = run_loop(main(args))
    if args.json:
        print(json.dumps(result))
        return
    limit = result["limit_usd"]
    print(f"{result['calls']} concurrent calls against a ${limit:.2f} budget\n")
    print(f"{'policy':<22}{'spent $':>10}{'of limit':>10}{'answered':>10}{'seconds':>9}")
    for name, label in (("strict", "strict reservations"), ("naive", "check after the call")):
        spent_usd = result[f"{name}_spent_usd"]
        print(
            f"{label:<22}{spent_usd:>10.4f}{spent_usd / limit:>10.0%}"
            f"{result[f'{name}_answered']:>10}{result[f'{name}_seconds']:>9.2f}"
        )


if __name__ == "__main__":
    cli()
