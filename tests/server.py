"""A real uvicorn on 127.0.0.1 and an ephemeral port, in a thread of this process.

::

    with serving(create_app(agents=[poet])) as base:     # "http://127.0.0.1:PORT"
        httpx.get(base + "/api/agents")

The server runs its own event loop in a background thread, so tests drive it
with real clients (httpx, httpx-sse, websockets, Chromium) over real sockets,
and can still look at the app's state (``app.state.hub``) between requests.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvicorn

__all__ = ["in_server_loop", "serving"]

T = TypeVar("T")


class _Server(uvicorn.Server):
    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def install_signal_handlers(self) -> None:  # not the main thread: leave signals alone
        pass


_servers: dict[str, _Server] = {}


@contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """Serve *app* with uvicorn until the block ends; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "on"} | config
    server = _Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.005)
    base = f"http://127.0.0.1:{port}"
    _servers[base] = server
    try:
        yield base
    finally:
        del _servers[base]
        server.should_exit = True
        thread.join(15)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("uvicorn did not stop within 15 s")


def in_server_loop(base: str, fn: Callable[[], T], timeout: float = 5) -> T:
    """Call *fn* on the server's event loop thread (to read its state safely)."""
    loop = _servers[base].loop
    assert loop is not None

    async def call() -> T:
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)
