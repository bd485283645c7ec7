"""The Content-Security-Policy in Chromium: the demo page, the full-page chat and the
dashboard do everything they do without a single violation (a blocked style or script
shows in no other test: the page just looks or works a little worse)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.web.test_widget import CHROMIUM_ARGS, send, wait_idle

from .conftest import ADMIN_KEY, Server

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def watched(browser: Browser) -> tuple[Page, list[str]]:
    """A page, and the violations it reports (its console's and its DOM events')."""
    page = await browser.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    await page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e =>"
        " console.error('Content Security Policy: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    return page, violations


async def test_the_pages_work_within_their_policy(browser: Browser, server: Server) -> None:
    page, violations = await watched(browser)
    await page.goto(f"{server.url}/?agent=echo")
    await page.click(".bubble")  # the demo page's inline script loaded the widget
    await send(page, "Hello")
    await page.locator(".answer .foot").first.wait_for(timeout=20_000)
    await wait_idle(page)
    await page.goto(f"{server.url}/chat/echo")
    await send(page, "Hello again")
    await page.locator(".answer .foot").first.wait_for(timeout=20_000)
    assert await page.locator(".conversations li").count() >= 1  # chat-page.js ran
    await page.goto(f"{server.url}/dashboard/login")
    await page.fill("input[name=key]", ADMIN_KEY)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{server.url}/dashboard")
    for path in ("/dashboard/sessions", "/dashboard/runs"):
        await page.goto(server.url + path)
    nav = page.locator("nav a").first
    assert await nav.evaluate("e => getComputedStyle(e).color") == "rgb(255, 255, 255)"
    assert violations == []


async def test_a_page_cannot_frame_the_dashboard(browser: Browser, server: Server) -> None:
    page, violations = await watched(browser)
    await page.goto(f"{server.url}/chat/echo")  # the server's own page, even
    await page.evaluate(
        "() => new Promise(done => { const f = document.createElement('iframe');"
        " f.src = '/dashboard/login'; f.onload = done; document.body.appendChild(f); })"
    )
    frame = page.frames[-1]
    assert await frame.evaluate("() => document.querySelector('form') === null")
    assert any("frame-ancestors" in v for v in violations)
