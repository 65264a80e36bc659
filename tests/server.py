"""A real uvicorn on 127.0.0.1 and an ephemeral port, in a thread of this process.

::

    with serving(create_app(agents=[poet])) as base:     # "http://127.0.0.1:PORT"
        httpx.get(base + "/api/agents")

It is the library's own ``agentnb.server.start_server``: the server runs its own
event loop in a background thread, so tests drive it with real clients (httpx,
httpx-sse, websockets, Chromium) over real sockets, and can still look at the
app's state (``app.state.hub``) on its loop with ``in_server_loop``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from agentnb.server import BackgroundServer, start_server

__all__ = ["in_server_loop", "serving"]

T = TypeVar("T")

_servers: dict[str, BackgroundServer] = {}


@contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """Serve *app* with uvicorn until the block ends; yield its base URL."""
    with start_server(app, **config) as server:
        _servers[server.url] = server
        try:
            yield server.url
        finally:
            del _servers[server.url]


def in_server_loop(base: str, fn: Callable[[], T], timeout: float = 5) -> T:
    """Call *fn* on the server's event loop thread (to read its state safely)."""
    return _servers[base].call(fn, timeout)
