"""``start_server()``: uvicorn in a background thread, for notebooks, scripts and tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from ._guard import BODY_TIMEOUT, HEADER_TIMEOUT, KEEP_ALIVE_TIMEOUT, guarded_config

__all__ = ["BackgroundServer", "start_server"]

T = TypeVar("T")


class _Server(uvicorn.Server):
    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def install_signal_handlers(self) -> None:  # not the main thread: signals stay the caller's
        pass


class BackgroundServer:
    """A uvicorn serving an app from a thread of this process; ``stop()`` (or ``with``) ends it.

    ``url`` is its base URL (``http://127.0.0.1:PORT``); ``app`` the app it serves.
    The limits (*header_timeout*, *body_timeout*, *max_connections*,
    *timeout_keep_alive*) are ``serve()``'s; this process's open-file limit is
    left as it is.
    """

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        max_connections: int | None = None,
        timeout_keep_alive: float = KEEP_ALIVE_TIMEOUT,
        **uvicorn_options: Any,
    ) -> None:
        self.app = app
        options: dict[str, Any] = {"log_level": "warning", "lifespan": "on"} | uvicorn_options
        config = guarded_config(  # first: bad options raise before a socket is bound
            app,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            max_connections=max_connections,
            timeout_keep_alive=timeout_keep_alive,
            **options,
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        bound = self._socket.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{bound}"
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"agentnb server {self.url}",
            daemon=True,
        )

    def __repr__(self) -> str:
        state = "running" if self._thread.is_alive() else "stopped"
        return f"<agentnb.server.BackgroundServer {self.url} {state}>"

    def start(self, timeout: float = 10) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the server at {self.url} failed to start (see its log)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server at {self.url} did not start in {timeout} s")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 15) -> None:
        """Stop serving: live runs are cancelled, their streams end; waits for the thread."""
        hub = getattr(getattr(self.app, "state", None), "hub", None)
        loop = self._server.loop
        if hub is not None and loop is not None and self._thread.is_alive():
            # First the runs end (their streams send ``cancelled`` and close), then
            # uvicorn stops: it waits for open responses, which are now ending.
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(hub.begin_shutdown)
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()
        if self._thread.is_alive():
            raise TimeoutError(f"the server at {self.url} did not stop within {timeout} s")

    def call(self, fn: Callable[[], T], timeout: float = 5) -> T:
        """Call *fn* on the server's event loop (to look at its state safely); return its value."""
        loop = self._server.loop
        if loop is None:
            raise RuntimeError("the server is not running")

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_server(
    app: FastAPI | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    max_connections: int | None = None,
    timeout_keep_alive: float = KEEP_ALIVE_TIMEOUT,
    **uvicorn_options: Any,
) -> BackgroundServer:
    """Serve *app* (default: ``create_app()``) from a background thread; return at once.

    ``port=0`` picks a free port (see ``.url``). In a notebook::

        server = agentnb.server.start_server(create_app(agents=[poet]))
        server.url        # 'http://127.0.0.1:41234'
        server.stop()

    The limits are ``serve()``'s: a connection's request headers are due within
    *header_timeout* seconds (10), a body within *body_timeout* (30) of its request's
    start (else 408), and beyond *max_connections* (default: the open-file limit less
    64, at most 4096) a connection gets 503; *timeout_keep_alive* (5) is uvicorn's.
    """
    if app is None:
        from ._app import create_app

        app = create_app()
    return BackgroundServer(
        app,
        host,
        port,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
        timeout_keep_alive=timeout_keep_alive,
        **uvicorn_options,
    ).start()
