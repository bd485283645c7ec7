#!/usr/bin/env python
"""Screenshots of the chat widget and the full-page chat, for docs/images/.

    python scripts/screenshots.py            # starts its own server (embedded PostgreSQL)
    python scripts/screenshots.py --out DIR

It serves the demo support bot (offline demo model, bundled knowledge base) and the widget
tests' agents (tests/web/apps.py: Markdown answers, an unavailable model) from a throwaway
database, then drives Debian's Chromium through Playwright at a device scale factor of 1 and
crops each shot to the widget, so that the PNGs stay small.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.web.apps
os.environ.setdefault("THREADLINE_EMBEDDER", "hash")  # the fast embedder: no model download

from playwright.async_api import Browser, FloatRect, Page, async_playwright  # noqa: E402

from tests.web.apps import showcase, unavailable  # noqa: E402
from threadline import Engine, db  # noqa: E402
from threadline.demo import support  # noqa: E402
from threadline.router import Models  # noqa: E402
from threadline.sessions import Sessions  # noqa: E402
from threadline.testing.server import serving  # noqa: E402
from threadline.web import Auth, Hub, create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"]
MARGIN = 24  # around the widget: its shadow

HOST_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Tidewater</title>
<style>
body {{ margin: 0; font: 16px/1.6 system-ui, sans-serif; color: #2d3748; background: {bg}; }}
header {{ padding: 18px 40px; background: #234e52; color: #fff; font-weight: 600; }}
main {{ padding: 32px 40px; max-width: 560px; }}
.line {{ height: 12px; margin: 14px 0; border-radius: 6px; background: {line}; }}
</style></head><body><header>Tidewater · TL-500 water purifier</header><main>
<h1>Clean water, simply</h1><div class="line"></div><div class="line" style="width:80%"></div>
<div class="line" style="width:90%"></div></main>
<script src="/widget.js" data-agent="{agent}" data-title="{title}" data-theme="{theme}"
 data-greeting="{greeting}" data-placeholder="Ask about your purifier"></script>
</body></html>"""


@contextlib.asynccontextmanager
async def demo_server() -> AsyncIterator[str]:
    """The app with the demo bots on a throwaway embedded database; yields its URL."""
    engine = Engine(data_dir=db.temporary_data_dir("threadline-shots-"), poll_interval=0.05)
    models = Models(model_options={"demo": {"tokens_per_second": 400}})
    sessions = Sessions(engine, [support, showcase, unavailable], models=models)
    async with engine:
        hub = Hub(engine.url)
        await hub.start()
        auth = Auth(secret="screenshots-secret-of-at-least-32-bytes")
        try:
            async with serving(create_app(sessions, hub, auth)) as url:
                yield url
        finally:
            await hub.stop()
            await models.aclose()


class Shooter:
    def __init__(self, browser: Browser, url: str, out: Path) -> None:
        self.browser, self.url, self.out = browser, url, out

    async def page(
        self,
        agent: str = "support",
        *,
        theme: str = "light",
        width: int = 1100,
        height: int = 760,
        greeting: str = "",
    ) -> Page:
        """A host page with the widget, opened; each page has its own storage."""
        context = await self.browser.new_context(
            viewport={"width": width, "height": height}, device_scale_factor=1
        )
        page = await context.new_page()
        dark = theme == "dark"
        html = HOST_PAGE.format(
            agent=agent,
            title="Tidewater support",
            theme=theme,
            greeting=greeting,
            bg="#1a202c" if dark else "#f7fafc",
            line="#2d3748" if dark else "#e2e8f0",
        )
        # A plain HTML page of the server's origin (the dashboard's login form), rewritten:
        # Chromium lets only pages it loaded from a local address reach a local server
        # (route.fulfill would not do).
        await page.goto(f"{self.url}/dashboard/login")
        await page.set_content(html)
        await page.click(".bubble")
        return page

    async def ask(self, page: Page, text: str, *, wait: bool = True) -> None:
        await page.fill("textarea", text)
        await page.press("textarea", "Enter")
        if wait:
            await page.wait_for_selector(".answer .foot", timeout=20_000)
            await page.wait_for_selector("form button.send", timeout=20_000)

    async def widget(self, page: Page, name: str) -> None:
        """The open panel and its shadow, as `name`."""
        await page.mouse.move(0, 0)
        await page.wait_for_timeout(150)
        box = await page.locator(".panel").bounding_box()
        assert box is not None
        view = page.viewport_size or {"width": 0, "height": 0}
        x, y = max(0, box["x"] - MARGIN), max(0, box["y"] - MARGIN)
        clip: FloatRect = {
            "x": x,
            "y": y,
            "width": min(view["width"], box["x"] + box["width"] + MARGIN) - x,
            "height": min(view["height"], box["y"] + box["height"] + MARGIN) - y,
        }
        await self.save(page, name, clip=clip)

    async def save(self, page: Page, name: str, clip: FloatRect | None = None) -> None:
        path = self.out / name
        await page.screenshot(path=str(path), clip=clip)
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{shown}: {path.stat().st_size // 1024} KiB")
        await page.context.close()


async def desktop(s: Shooter) -> None:
    page = await s.page()
    await s.ask(page, "What is the warranty on the leak sensor?")
    await s.widget(page, "widget-desktop.png")


async def phone(s: Shooter) -> None:
    page = await s.page(width=375, height=812)
    await s.ask(page, "How often do I change the filters?")
    await s.save(page, "widget-phone.png")


async def dark(s: Shooter) -> None:
    page = await s.page("showcase", theme="dark")
    await s.ask(page, "How do I change the pre-filter?")
    await s.widget(page, "widget-dark.png")


async def code(s: Shooter) -> None:
    page = await s.page("showcase")
    await s.ask(page, "Show me retry code in Python")
    await page.evaluate(  # the first code block at the top of the log
        "() => { const log = window.threadlineWidget.showcase.root.querySelector('.log');"
        " log.scrollTop = log.querySelector('.answer').offsetTop - 60; }"
    )
    await s.widget(page, "widget-code.png")


async def table(s: Shooter) -> None:
    page = await s.page("showcase")
    await s.ask(page, "Which parts are there? A table please")
    await s.widget(page, "widget-table.png")


async def tool_step(s: Shooter) -> None:
    page = await s.page()
    await s.ask(page, "Can you look up part TL-4471?")
    step = page.locator("details.step summary").first
    await step.click()
    await step.evaluate("e => e.scrollIntoView({block: 'start'})")  # the step at the top
    await s.widget(page, "widget-tool-step.png")


async def approval(s: Shooter) -> None:
    page = await s.page()
    await s.ask(page, "Can you place an order for part TL-4472?", wait=False)
    await page.locator(".approval").wait_for(timeout=20_000)
    await s.widget(page, "widget-approval.png")


async def error(s: Shooter) -> None:
    page = await s.page("unavailable")
    await s.ask(page, "Is the leak sensor covered?", wait=False)
    await page.locator(".msg.error").wait_for(timeout=20_000)
    await page.wait_for_selector("form button.send")
    await s.widget(page, "widget-error.png")


async def full_page(s: Shooter) -> None:
    context = await s.browser.new_context(
        viewport={"width": 1280, "height": 760}, device_scale_factor=1
    )
    page = await context.new_page()
    await page.goto(f"{s.url}/chat/support")
    for question in (
        "Which filters does the TL-500 need?",
        "The display shows E4, what now?",
        "How do I install the faucet?",
    ):
        await page.locator(".new-chat").click()
        await page.fill("textarea", question)
        await page.press("textarea", "Enter")
        await page.wait_for_selector(".answer .foot", timeout=20_000)
        await page.wait_for_selector("form button.send", timeout=20_000)
    await page.locator(".conv .open").first.wait_for()
    await page.wait_for_timeout(200)
    await s.save(page, "full-page-chat.png")


SHOTS: list[Callable[[Shooter], Awaitable[None]]] = [
    desktop,
    phone,
    dark,
    code,
    table,
    tool_step,
    approval,
    error,
    full_page,
]


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    async with demo_server() as url, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        shooter = Shooter(browser, url, out)
        for shot in SHOTS:
            await shot(shooter)
        await browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    asyncio.run(main(parser.parse_args().out))
