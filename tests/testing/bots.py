"""A small shop bot for the plugin's tests: a tool, a tool that asks first, one state."""

from __future__ import annotations

from threadline import Agent, Turn, tool

ORDERS = {"A-1": "shipped yesterday", "A-2": "waiting for stock"}


@tool
def order_status(order_id: str) -> dict[str, str]:
    """Where an order is.

    Args:
        order_id: The order's number, like A-1.
    """
    return {"order_id": order_id, "status": ORDERS.get(order_id, "unknown")}


@tool(confirm=True)
def refund(order_id: str) -> dict[str, object]:
    """Refund an order (the customer approves it first).

    Args:
        order_id: The order's number.
    """
    return {"order_id": order_id, "refunded": True}


shop = Agent(name="shop", prompt="You help with orders.", tools=[order_status, refund])


@shop.state("start")
async def answering(turn: Turn) -> str | None:
    await turn.reply()
    return None


AGENTS = [shop]
