"""Agents and an engine for chat processes the tests start: `threadline serve --agents
tests.web.apps:AGENTS` and `threadline worker --app tests.web.apps:engine`."""

from __future__ import annotations

from threadline import Engine
from threadline.agents import Agent, Turn
from threadline.llm import Overloaded
from threadline.llm.demo import DemoModel
from threadline.rag.knowledge import KB_DIR, Knowledge
from threadline.router import ModelPolicy
from threadline.sessions import Sessions
from threadline.tools import ToolError, tool

slow = Agent(name="slow", model="demo:threadline-demo", prompt="You are a test bot.")


@slow.state("start")
async def _answer(turn: Turn) -> str | None:
    await turn.reply()
    return None


AGENTS = [slow]
engine = Engine(poll_interval=0.2, recover_interval=0.2)
sessions = Sessions(engine, AGENTS)

# -- for the Vercel AI SDK tests (tests/web/test_aisdk*.py and tests/node/) -------------------

drawl = Agent(
    name="drawl",
    model=ModelPolicy(DemoModel("threadline-demo", tokens_per_second=15)),
    prompt="You are a slow test bot: a client can drop and resume mid-answer.",
)


@tool
def warehouse_stock(code: str) -> dict[str, object]:
    """How many of a part the warehouse holds.

    Args:
        code: The part code, like TL-4471.
    """
    return {"code": code.upper(), "in_stock": 12}


@tool
def supplier_status(code: str) -> dict[str, object]:
    """Ask the supplier about a part's delivery.

    Args:
        code: The part code, like TL-4471.
    """
    raise ToolError(f"the supplier does not answer for {code}")


@tool(confirm=True)
def reserve_item(code: str) -> dict[str, object]:
    """Reserve one item for the customer (they approve it first).

    Args:
        code: The part code, like TL-4471.
    """
    return {"reserved": True, "code": code.upper()}


# Answers from the demo's knowledge base (cited sources), with a tool that works, one that
# fails and one that needs approval; the user's words name the tool ("warehouse",
# "supplier", "reserve").
counter = Agent(
    name="counter",
    model="demo:threadline-demo",
    prompt="You are the parts counter of Tidewater. Answer from the context, citing [n].",
    tools=[warehouse_stock, supplier_status, reserve_item],
    knowledge=Knowledge(KB_DIR, collection="aisdk-counter"),
)


@drawl.state("start")
@counter.state("start")
async def _aisdk_answer(turn: Turn) -> str | None:
    await turn.reply()
    return None


AISDK_AGENTS = [drawl, counter]


# -- for the widget's tests and screenshots (tests/web/test_widget_element.py,
# scripts/screenshots.py; not in AGENTS) ------------------------------------------------------

SHOWCASE_CODE = """Here is a retry helper with exponential backoff:

```python
import time

def retry(call, attempts=5, base=0.25):
    \"\"\"Call `call` until it succeeds, waiting longer after each failure.\"\"\"
    for n in range(attempts):
        try:
            return call()
        except ConnectionError:
            time.sleep(base * 2 ** n)  # 0.25 s, 0.5 s, 1 s, ...
    raise RuntimeError(f"gave up after {attempts} attempts")
```

And the same idea in JavaScript:

```js
const retry = async (call, attempts = 5) => {
  for (let n = 0; n < attempts; n++) {
    try { return await call(); } catch { await new Promise(r => setTimeout(r, 250 * 2 ** n)); }
  }
};
```"""

SHOWCASE_TABLE = """Filters and parts for the **TL-500**:

| Part | Code | Replace every | Price |
|---|---|--:|--:|
| Sediment pre-filter | `TL-4471` | 6 months | €14.00 |
| Carbon block | `TL-4472` | 6 months | €29.00 |
| Reverse-osmosis membrane | `TL-4480` | 24 months | €89.00 |
| Remineralisation cartridge | `TL-6610` | 12 months | €24.00 |
| Faucet kit, brushed steel | `TL-2210` | — | €45.00 |

Prices include VAT; see the [parts catalogue](https://example.com/parts)."""

SHOWCASE_TEXT = """### Changing the pre-filter

1. Close the **inlet valve** and open the faucet to release the pressure.
2. Twist the housing *anticlockwise* and pull the old cartridge out.
3. Push in the new `TL-4471` until it clicks, then reopen the valve.

> Run the water for two minutes before drinking it.

More in the [installation guide](https://example.com/install)."""


def showcase_answer(text: str) -> str:
    """A fixed Markdown answer by the question's words: code, a table, else steps."""
    words = text.lower()
    if "code" in words or "python" in words:
        return SHOWCASE_CODE
    if "table" in words or "parts" in words:
        return SHOWCASE_TABLE
    return SHOWCASE_TEXT


showcase = Agent(name="showcase", model="demo:threadline-demo", title="Showcase")


@showcase.state("start")
async def _showcase(turn: Turn) -> str | None:
    await turn.say(showcase_answer(turn.text))
    return None


# A model of its own name: its cooldown after failing leaves the other agents' demo model be.
unavailable = Agent(
    name="unavailable",
    title="Support",
    model=ModelPolicy(DemoModel("always-overloaded", fail_with=Overloaded("529 overloaded"))),
)


@unavailable.state("start")
async def _unavailable(turn: Turn) -> str | None:
    await turn.reply()
    return None
