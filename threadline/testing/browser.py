"""The widget in Chromium, through Playwright: a host page on another origin embeds it with
one script tag, and `WidgetPage` works it as a person would (through its Shadow DOM).

    async with open_widget(site, server, "support") as widget:
        await widget.send("Where is my order?")
        await widget.wait_for_answer()
        assert "shipped" in await widget.answer_text()
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .site import HostSite, host_page, page_agent

if TYPE_CHECKING:
    from playwright.async_api import Page

    from .server import TestServer

__all__ = ["CHROMIUM_ARGS", "WidgetPage", "chromium_path", "open_widget"]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_ENV = "THREADLINE_CHROMIUM"

# Counts of what the widget shows: ended answers, errors, approval cards.
_COUNTS = """agent => {
  const handle = (window.threadlineWidget || {})[agent];
  if (!handle) return null;
  const root = handle.root;
  return {ended: root.querySelectorAll('.answer .foot').length,
          errors: root.querySelectorAll('.msg.error').length,
          approvals: root.querySelectorAll('.approval').length,
          busy: !!root.querySelector('form button.stop')};
}"""
_ANSWERED = (
    "([agent, before]) => { const c = (" + _COUNTS + ")(agent);"
    " return c && !c.busy && (c.ended > before.ended || c.errors > before.errors)"
    " || c && c.approvals > 0; }"
)


def chromium_path() -> str | None:
    """`$THREADLINE_CHROMIUM`, else the system's `chromium`, else None (Playwright's own)."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


class WidgetPage:
    """A host page with the widget of `agent`; `page` is the Playwright page."""

    def __init__(self, page: Page, agent: str) -> None:
        self.page = page
        self.agent = agent
        self.element = page.locator(f'threadline-chat[agent="{agent}"]')  # its Shadow DOM
        self.console: list[str] = []  # the page's console errors
        self._before: dict[str, Any] = {"ended": 0, "errors": 0}
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console.append(str(e)))

    async def counts(self) -> dict[str, Any]:
        counts: dict[str, Any] | None = await self.page.evaluate(_COUNTS, self.agent)
        if counts is None:
            raise AssertionError(f"no widget for agent {self.agent!r} on the page")
        return counts

    async def open(self) -> None:
        """Open the chat (click the bubble) unless it is open or inline."""
        if not await self.element.locator("textarea").is_visible():
            await self.element.locator(".bubble").click()
        await self.element.locator("textarea").wait_for(state="visible")

    async def send(self, text: str) -> None:
        """Type `text` and press Enter, as a visitor would."""
        await self.open()
        self._before = await self.counts()
        await self.element.locator("textarea").fill(text)
        await self.element.locator("textarea").press("Enter")

    async def wait_for_answer(self, timeout: float = 30.0) -> None:
        """Until the answer to the last message has ended (or failed, or waits for an
        approval)."""
        await self.page.wait_for_function(
            _ANSWERED, arg=[self.agent, self._before], timeout=timeout * 1000
        )

    async def answer_text(self) -> str:
        """The last answer's text, as shown."""
        return await self.element.locator(".answer .msg.assistant").last.inner_text()

    async def _meta(self) -> list[str]:
        meta = self.element.locator(".answer .foot .meta")
        if not await meta.count():
            return []
        return (await meta.last.inner_text()).split(" · ")

    async def model(self) -> str | None:
        """The last answer's model, as its footer shows it."""
        parts = await self._meta()
        return parts[0] if parts and not parts[0].startswith("$") else None

    async def cost(self) -> str | None:
        """The last answer's cost as its footer shows it ("$0.0049"), or None."""
        return next((p for p in await self._meta() if p.startswith("$")), None)

    async def error_text(self) -> str | None:
        """The last failed turn's message (without its "Try again" button), or None."""
        errors = self.element.locator(".msg.error")
        if not await errors.count():
            return None
        text: str = await errors.last.evaluate(
            "el => [...el.childNodes].filter(n => n.nodeName !== 'BUTTON')"
            ".map(n => n.textContent).join('').trim()"
        )
        return text

    async def try_again(self) -> None:
        """Press the last error's "Try again"."""
        self._before = await self.counts()
        await self.element.locator(".msg.error button").last.click()

    async def approve(self) -> None:
        """Approve the tool call the approval card asks about."""
        await self._choose("approve")

    async def decline(self) -> None:
        await self._choose("decline")

    async def _choose(self, choice: str) -> None:
        card = self.element.locator(".approval")
        await card.first.wait_for(state="visible")
        self._before = await self.counts()
        await card.first.locator(f"button.{choice}").click()

    async def stop(self) -> None:
        """Press the stop button of a streaming answer."""
        await self.element.locator("form button.stop").click()


@contextlib.asynccontextmanager
async def open_widget(
    site: HostSite,
    server: TestServer,
    agent: str | None = None,
    *,
    page: str | Path | None = None,
    **attributes: str,
) -> AsyncIterator[WidgetPage]:
    """Chromium on a host page of `site` embedding the widget of `server`: `page` (a site's
    HTML file, or HTML) with its widget script pointed at the server, else a blank page with
    one script tag for `agent` and `attributes` as its `data-*`."""
    from playwright.async_api import async_playwright

    folder: Path | None = None
    if isinstance(page, Path):
        folder, page = page.parent, page.read_text(encoding="utf-8")
    agent = agent or (page_agent(page) if page else None)
    if agent is None:
        agent = next(iter(server.sessions.agents))
    url = site.publish(host_page(server.url, agent, page, **attributes), folder=folder)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS
        )
        try:
            tab = await browser.new_page()
            widget = WidgetPage(tab, agent)
            await tab.goto(url)
            await tab.wait_for_function(
                "agent => !!(window.threadlineWidget || {})[agent]", arg=agent
            )
            yield widget
        finally:
            await browser.close()
