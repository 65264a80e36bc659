"""Refuse requests whose Host is not one of this server's names (DNS-rebinding guard)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ANY_HOST", "AllowedHosts", "host_name", "host_names"]

ANY_HOST = "*"
"""In ``allowed_hosts``: answer requests naming any host (no DNS-rebinding guard)."""


def host_name(header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8000`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") > 1:  # an IPv6 address written bare (as in allowed_hosts)
        return header
    return header.partition(":")[0]


def host_names(allowed_hosts: Iterable[str]) -> frozenset[str]:
    """The names in *allowed_hosts* as the guard compares them; refuses an empty list."""
    if isinstance(allowed_hosts, str):
        raise TypeError(
            f"allowed_hosts is a list of names, not one string: pass [{allowed_hosts!r}]"
        )
    names = frozenset(host_name(h) for h in allowed_hosts)
    if not names:
        raise ValueError(
            "allowed_hosts is empty, so no request would be answered: pass the names "
            "clients use in Host, e.g. ['127.0.0.1', 'localhost', '::1'] "
            "(or ['*'] to answer any Host, without the DNS-rebinding guard)"
        )
    return names


class AllowedHosts:
    """ASGI middleware: a request naming another host gets a JSON 400 (a WebSocket, 1008).

    A web page elsewhere can point a name of its own at 127.0.0.1; the browser then
    sends that name as Host, which this refuses, so the page cannot drive local agents.
    ``"*"`` among *allowed_hosts* answers any Host. A request with more than one Host
    header is always refused: the app would build its URLs from one, this checks one.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        names = host_names(allowed_hosts)
        self.app = app
        self.any = ANY_HOST in names
        self.allowed = names - {ANY_HOST}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        hosts = [value for key, value in scope["headers"] if key == b"host"]
        name = host_name(hosts[0].decode("latin-1")) if hosts else ""
        if len(hosts) <= 1 and (self.any or name in self.allowed):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            reason = "more than one Host header" if len(hosts) > 1 else "unknown host"
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return
        if len(hosts) > 1:
            message = f"this request has {len(hosts)} Host headers; send exactly one"
        else:
            message = (
                f"this server answers to {', '.join(sorted(self.allowed))}, not to Host "
                f"{name!r}; to serve other names, pass them in create_app(allowed_hosts=[...]) "
                "(python -m agentnb serve: --allow-host NAME)"
            )
        response = JSONResponse({"error": "bad_host", "message": message}, status_code=400)
        await response(scope, receive, send)
