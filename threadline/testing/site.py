"""A host page on another origin: a small static web server on its own port of 127.0.0.1
(another origin than the threadline server's), serving pages that embed the widget with one
script tag, as a customer's site would."""

from __future__ import annotations

import html
import itertools
import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["HostSite", "host_page"]

_WIDGET_SRC = re.compile(r"""(<script\b[^>]*\bsrc=)(["'])[^"']*widget\.js\2""", re.IGNORECASE)
_AGENT = re.compile(r"""\bdata-agent=(["'])([^"']+)\1""", re.IGNORECASE)

BLANK = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Host page</title></head>
<body>
<h1>A customer's page</h1>
<p>The chat is in the corner.</p>
{script}
</body>
</html>
"""


def host_page(server_url: str, agent: str, page: str | None = None, **attributes: str) -> str:
    """HTML embedding the widget of `server_url`: `page` (a site's own HTML) with its widget
    script pointed at the server, or a blank page with one script tag for `agent` (with
    `data-*` attributes from `attributes`, e.g. `title="Help"`)."""
    src = f"{server_url}/widget.js"
    if page is not None and _WIDGET_SRC.search(page):
        return _WIDGET_SRC.sub(lambda m: f"{m[1]}{m[2]}{src}{m[2]}", page, count=1)
    data = {"agent": agent, **{k.replace("_", "-"): v for k, v in attributes.items()}}
    attrs = "".join(f' data-{k}="{html.escape(v)}"' for k, v in data.items())
    script = f'<script src="{html.escape(src)}"{attrs}></script>'
    if page is None:
        return BLANK.format(script=script)
    if "</body>" in page:
        return page.replace("</body>", script + "\n</body>", 1)
    return page + script


def page_agent(page: str) -> str | None:
    """The agent a page's widget script names (`data-agent`), if any."""
    found = _AGENT.search(page)
    return found[2] if found else None


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, site: HostSite, **kwargs: Any) -> None:
        self.site = site
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if self.path == "/favicon.ico":  # what every browser asks for first
            self.send_response(204)
            self.end_headers()
            return
        parts = self.path.split("?", 1)[0].split("/", 3)  # "", "_pages", number, rest
        found = self.site.pages.get(parts[2]) if len(parts) == 4 and parts[1] == "_pages" else None
        if found is None:
            self.send_error(404)
            return
        page, name, folder = found
        if parts[3] != name:  # the site's other files: styles, images
            if folder is None:
                self.send_error(404)
                return
            self.directory, self.path = str(folder), "/" + parts[3]
            super().do_GET()
            return
        body = page.encode("utf-8")
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HostSite:
    """A static server in a thread; `publish(html)` gives a page's URL."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, str, Path | None]] = {}  # number -> page, name, folder
        self._numbers = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, site=self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="threadline-host-site", daemon=True
        )
        self._thread.start()

    def publish(self, page: str, *, folder: Path | None = None, name: str = "index.html") -> str:
        """Serve `page` at a path of its own, with the other files of `folder` (a site's
        styles and images) beside it; its URL."""
        number = str(next(self._numbers))
        self.pages[number] = (page, name, folder)
        return f"{self.origin}/_pages/{number}/{name}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
