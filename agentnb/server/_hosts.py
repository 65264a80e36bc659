"""Refuse requests whose Host is not one of this server's names (DNS-rebinding guard)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["AllowedHosts", "host_name"]


def host_name(header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8000`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") > 1:  # an IPv6 address written bare (as in allowed_hosts)
        return header
    return header.partition(":")[0]


class AllowedHosts:
    """ASGI middleware: a request naming another host gets a JSON 400 (a WebSocket, 1008).

    A web page elsewhere can point a name of its own at 127.0.0.1; the browser then
    sends that name as Host, which this refuses, so the page cannot drive local agents.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_name(h) for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        name = host_name(headers.get(b"host", b"").decode("latin-1"))
        if name in self.allowed:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "unknown host"})
            return
        message = (
            f"this server answers to {', '.join(sorted(self.allowed))}, not to Host {name!r}; "
            "to serve other names, pass them in create_app(allowed_hosts=[...])"
        )
        response = JSONResponse({"error": "bad_host", "message": message}, status_code=400)
        await response(scope, receive, send)
