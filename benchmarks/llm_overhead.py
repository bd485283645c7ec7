"""Time threadline adds to an LLM call: adapter + pricing + ledger row, over the bare SDK.

For each provider, the official SDK client calls the provider's local test server (the one
the tests use, speaking the real wire protocol) directly, and then through threadline's
`LLM.request` (adapter, genai-prices, one ledger row written to PostgreSQL). Calls alternate
between the two so both see the same server and machine state; the added time is the
difference of the medians (and of the 99th percentiles).

    python benchmarks/llm_overhead.py            # a table
    python benchmarks/llm_overhead.py --json     # {"anthropic": {"p50_added_ms": ...}, ...}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.llm.servers import anthropic as anthropic_server  # noqa: E402
from tests.llm.servers import google as google_server  # noqa: E402
from tests.llm.servers import ollama as ollama_server  # noqa: E402
from tests.llm.servers import openai as openai_server  # noqa: E402
from tests.llm.servers.base import ProviderServer, Script, start_server  # noqa: E402
from threadline import Engine, db  # noqa: E402
from threadline.ledger import Ledger, Scope  # noqa: E402
from threadline.llm import Message, get_model  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402
from threadline.router import Models  # noqa: E402

QUESTION = "What is the capital of Portugal?"
MODELS = {
    "anthropic": "claude-sonnet-4-6",
    "openai": "gpt-4o-mini",
    "google": "gemini-2.5-flash",
    "ollama": "llama3.2",
}
SERVERS = {
    "anthropic": anthropic_server.create_app,
    "openai": openai_server.create_app,
    "google": google_server.create_app,
    "ollama": ollama_server.create_app,
}
Call = Callable[[], Awaitable[Any]]


def bare_call(provider: str, url: str) -> Call:
    """The plain SDK call, as a user of the SDK alone would write it."""
    model = MODELS[provider]
    if provider == "anthropic":
        import anthropic

        a_client = anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0)
        return lambda: a_client.messages.create(
            model=model, max_tokens=256, messages=[{"role": "user", "content": QUESTION}]
        )
    if provider == "openai":
        import openai

        o_client = openai.AsyncOpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
        return lambda: o_client.chat.completions.create(
            model=model, max_tokens=256, messages=[{"role": "user", "content": QUESTION}]
        )
    if provider == "google":
        from google import genai
        from google.genai import types

        g_client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=url))
        # The same request threadline's adapter sends: typed contents, AFC off.
        config = types.GenerateContentConfig(
            max_output_tokens=256,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        contents = [types.Content(role="user", parts=[types.Part(text=QUESTION)])]
        return lambda: g_client.aio.models.generate_content(
            model=model, contents=contents, config=config
        )
    import ollama

    l_client = ollama.AsyncClient(host=url)
    return lambda: l_client.chat(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        options={"num_predict": 256},
    )


def ours_call(provider: str, url: str, llm: Models) -> Call:
    options: dict[str, Any] = {"base_url": url + ("/v1" if provider == "openai" else "")}
    if provider != "ollama":
        options["api_key"] = "k"
    model = get_model(f"{provider}:{MODELS[provider]}", **options)
    messages = [Message.user(QUESTION)]
    scope = Scope(tenant="bench", session="bench")
    return lambda: llm.request(model, messages, scope=scope, max_tokens=256)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def measure(bare: Call, ours: Call, calls: int, warmup: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for i in range(warmup + calls):
        for name, call in (
            (("bare", bare), ("ours", ours)) if i % 2 else (("ours", ours), ("bare", bare))
        ):
            started = time.perf_counter()
            await call()
            if i >= warmup:
                times[name].append((time.perf_counter() - started) * 1000)
    bare_p50, ours_p50 = statistics.median(times["bare"]), statistics.median(times["ours"])
    return {
        "bare_p50_ms": round(bare_p50, 3),
        "ours_p50_ms": round(ours_p50, 3),
        "p50_added_ms": round(ours_p50 - bare_p50, 3),
        "p99_added_ms": round(percentile(times["ours"], 99) - percentile(times["bare"], 99), 3),
    }


async def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    url = args.database_url or db.start_embedded(db.temporary_data_dir("tl-bench-"))
    servers: list[ProviderServer] = []
    results: dict[str, dict[str, float]] = {}
    try:
        async with Engine(url, worker=False) as engine:
            llm = Models(Ledger(engine.pool))
            for provider in args.providers:
                script = Script()
                server = start_server(SERVERS[provider](script), script)
                servers.append(server)
                results[provider] = await measure(
                    bare_call(provider, server.url),
                    ours_call(provider, server.url, llm),
                    args.calls,
                    args.warmup,
                )
            await llm.aclose()
    finally:
        for server in servers:
            server.stop()
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", default=None, help="default: an embedded PostgreSQL")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--providers", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results = run_loop(main(args))
    if args.json:
        print(json.dumps(results))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "provider", "bare SDK p50 ms", "threadline p50 ms", "added p50 ms", "added p99 ms"
    )
    for provider, r in results.items():
        table.add_row(
            provider,
            f"{r['bare_p50_ms']:.2f}",
            f"{r['ours_p50_ms']:.2f}",
            f"{r['p50_added_ms']:.2f}",
            f"{r['p99_added_ms']:.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    cli()
