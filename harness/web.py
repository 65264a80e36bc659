"""uvicorn on 127.0.0.1 and a port the OS chose: in a thread of this process, or a child process.

In this process::

    with serving(create_app(agents=[poet])) as base:     # "http://127.0.0.1:PORT"
        httpx.get(base + "/api/agents")
        in_server_loop(base, lambda: app.state.hub.live)  # read the app's state safely

It is the library's own ``agentnb.server.start_server``: the server runs its own
event loop in a background thread, so a test drives it with real clients over
real sockets and can still look at the app's state on its loop.

In a child process (a benchmark's server, measured from outside)::

    server = ServerProcess([__file__, "--serve"])  # the child calls serve_child(app)
    server.port, server.rss(), server.cpu(), server.waited(); server.close()
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from harness import ROOT
from harness.wire import request, split_head

__all__ = ["ServerProcess", "in_server_loop", "machine_busy", "serve_child", "serving"]

T = TypeVar("T")
HOST = "127.0.0.1"

_servers: dict[str, Any] = {}  # base URL -> agentnb.server.BackgroundServer


@contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """Serve *app* with uvicorn in a thread until the block ends; yield its base URL."""
    from agentnb.server import start_server

    with start_server(app, **config) as server:
        _servers[server.url] = server
        try:
            yield server.url
        finally:
            del _servers[server.url]


def in_server_loop(base: str, fn: Callable[[], T], timeout: float = 5) -> T:
    """Call *fn* on the event loop thread of the server at *base* (to read its state)."""
    result: T = _servers[base].call(fn, timeout)
    return result


def serve_child(app: Any, hello: dict[str, Any] | None = None, **config: Any) -> None:
    """In a child process: bind a free port, print ``{"port": ..., **hello}`` as one line,
    run uvicorn (*config*: ``uvicorn.Config``'s) on it until terminated."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(2048)
    print(json.dumps({"port": sock.getsockname()[1], **(hello or {})}), flush=True)
    settings: dict[str, Any] = {"log_level": "warning", "access_log": False, "backlog": 2048}
    uvicorn.Server(uvicorn.Config(app, **(settings | config))).run(sockets=[sock])


_TICK = os.sysconf("SC_CLK_TCK")  # clock ticks per second in /proc (Linux)


class ServerProcess:
    """A child process that serves with :func:`serve_child`: its port, RSS, CPU time, waits.

    *argv* is run with this interpreter, in the repository's root; the first line
    it prints is its hello (:attr:`hello`).
    """

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"the server process exited ({self.proc.returncode}) before serving")
        self.hello: dict[str, Any] = json.loads(line)
        self.port: int = self.hello["port"]

    async def get(self, path: str) -> bytes:
        """GET *path*; the response body (raises unless 200 within 30 s)."""
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(request("GET", path, "bench", headers={"Connection": "close"}))
            answer = await asyncio.wait_for(reader.read(), 30)
        finally:
            writer.close()
        status, _, body = split_head(answer)
        if status != 200:
            raise RuntimeError(f"GET {path}: {answer[:300]!r}")
        return body

    def rss(self) -> int:
        """Resident set size in bytes (``VmRSS`` of /proc/<pid>/status)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/<pid>/status")

    def cpu(self) -> float:
        """User + system CPU seconds used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK

    def waited(self) -> float:
        """Seconds the server's thread has spent runnable but waiting for a CPU."""
        with open(f"/proc/{self.proc.pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9

    def close(self) -> None:
        """Stop it (closing twice is harmless)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def machine_busy() -> float:
    """CPU seconds every process on the machine has used (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / _TICK
