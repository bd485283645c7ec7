"""`/widget.js`: one script (widget, renderer, styles, vendored libraries), gzipped for
browsers that take it, and revalidated by its ETag."""

from __future__ import annotations

from ..chat_server import ChatServer


async def test_the_bundle_is_gzipped_and_revalidated(chat: ChatServer) -> None:
    plain = await chat.http.get("/widget.js", headers={"accept-encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert "threadline-chat" in plain.text
    packed = await chat.http.get("/widget.js", headers={"accept-encoding": "gzip, br"})
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < len(plain.content) / 2
    assert packed.text == plain.text  # the same script
    etag = packed.headers["etag"]
    again = await chat.http.get("/widget.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and not again.content
