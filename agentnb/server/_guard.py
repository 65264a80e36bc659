"""Time limits and a connection cap for uvicorn, so slow or idle clients cannot hold a server.

uvicorn closes a keep-alive connection left idle after a response
(``timeout_keep_alive``), but waits as long as a client likes for a request's
headers or body, and accepts connections until the process runs out of files.
Here:

* :class:`GuardProtocol`, uvicorn's ``http=`` class, answers a connection beyond
  *max_connections* with a 503 and closes it at once; otherwise it arms the
  header deadline (*header_timeout*), builds the HTTP protocol uvicorn would
  have used, hands it the transport and steps out of the data path.
* :class:`GuardedApp`, around the app, disarms the deadline when a request on
  that connection reaches the app, re-arms it when the response is done (the next
  request's headers are due within *header_timeout*), and answers a body that is
  not in within *body_timeout* of the request's start with 408 and closes.

Requests are matched to connections by their scope's ``client`` and ``server``,
the transport's ``peername`` and ``sockname``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, ClassVar, cast

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.server import ServerState

__all__ = [
    "BODY_TIMEOUT",
    "HEADER_TIMEOUT",
    "KEEP_ALIVE_TIMEOUT",
    "ConnectionGuard",
    "GuardProtocol",
    "GuardedApp",
    "default_max_connections",
    "guarded_config",
    "http_protocol_class",
    "raise_open_file_limit",
]

HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send a request's headers (when new, and after each response)."""
BODY_TIMEOUT = 30.0
"""Seconds from a request's start for its whole body to arrive."""
KEEP_ALIVE_TIMEOUT = 5.0
"""uvicorn's ``timeout_keep_alive``: seconds an idle connection stays open after a response."""
MAX_CONNECTIONS_CAP = 4096
"""The default connection cap is the open-file limit less :data:`FILE_MARGIN`, at most this."""
FILE_MARGIN = 64
"""Open files left to the app (its own files, sockets, logs) beyond the connections."""

_logger = logging.getLogger("uvicorn.error")
_DISCONNECT: Message = {"type": "http.disconnect"}

Address = tuple[str, int]
ConnectionKey = tuple[Address, Address]


def default_max_connections() -> int:
    """This process's open-file soft limit less 64 (at least half of it), at most 4096."""
    if sys.platform == "win32":
        return MAX_CONNECTIONS_CAP
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CAP
    return max(1, min(MAX_CONNECTIONS_CAP, max(soft - FILE_MARGIN, soft // 2)))


def raise_open_file_limit(max_connections: int | None = None) -> None:
    """Raise this process's soft open-file limit towards its hard limit, as far as needed.

    Enough for *max_connections* (default 4096) plus 64. For a program that owns its
    process (``python -m agentnb serve``); a library call must not change it.
    """
    if sys.platform == "win32":
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = (max_connections or MAX_CONNECTIONS_CAP) + FILE_MARGIN
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def http_protocol_class(http: type[asyncio.Protocol] | str = "auto") -> type[asyncio.Protocol]:
    """The class uvicorn would serve *http* with ("auto": httptools if installed, else h11)."""
    if isinstance(http, str):
        return cast("type[asyncio.Protocol]", import_from_string(HTTP_PROTOCOLS.get(http, http)))
    return http


def _address(info: object) -> Address | None:
    # As uvicorn writes scope["client"] / scope["server"]: (host, port), also for IPv6.
    if isinstance(info, tuple | list) and len(info) >= 2 and info[1] is not None:
        return (str(info[0]), int(info[1]))
    return None


def _key(client: object, server: object) -> ConnectionKey | None:
    peer, local = _address(client), _address(server)
    return (peer, local) if peer is not None and local is not None else None


def _json_head(status: bytes, body: bytes, *extra: bytes) -> bytes:
    head = [
        b"HTTP/1.1 " + status,
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class _Connection:
    """One watched connection: its transport, requests in progress, and header deadline."""

    __slots__ = ("active", "deadline", "key", "transport")

    def __init__(self, transport: asyncio.Transport, key: ConnectionKey) -> None:
        self.transport = transport
        self.key = key
        self.active = 0
        self.deadline: asyncio.TimerHandle | None = None


class ConnectionGuard:
    """The limits of one server and the connections it watches (used on its loop only).

    *header_timeout*: seconds a connection has to send its request's headers, when new
    and after each response, before it is closed. *body_timeout*: seconds from a
    request's start for its body to arrive (else 408). *max_connections*: open
    connections at most (default :func:`default_max_connections`). *http*: the HTTP
    protocol to hand connections to, as uvicorn's ``http`` option.
    """

    def __init__(
        self,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        max_connections: int | None = None,
        http: type[asyncio.Protocol] | str = "auto",
    ) -> None:
        if not header_timeout > 0:
            raise ValueError(f"header_timeout is in seconds and > 0, got {header_timeout!r}")
        if not body_timeout > 0:
            raise ValueError(f"body_timeout is in seconds and > 0, got {body_timeout!r}")
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = (
            default_max_connections() if max_connections is None else max_connections
        )
        self.inner: Callable[..., asyncio.Protocol] = http_protocol_class(http)
        self.protocol = cast(
            "type[GuardProtocol]", type("GuardProtocol", (GuardProtocol,), {"guard": self})
        )
        """The class to give uvicorn as ``http``: connections made to it are guarded here."""
        message = (
            f"this server already holds its limit of {self.max_connections} connections; "
            "try again shortly (the limit is max_connections, or --max-connections)"
        )
        body = json.dumps({"error": "too_many_connections", "message": message}).encode()
        self.busy_response = _json_head(b"503 Service Unavailable", body, b"retry-after: 1")
        self.full = False
        self._watched: dict[ConnectionKey, _Connection] = {}

    def watch(self, transport: asyncio.Transport) -> None:
        """A new connection: its headers are due within *header_timeout*."""
        self.full = False
        key = _key(transport.get_extra_info("peername"), transport.get_extra_info("sockname"))
        if key is None:  # a Unix socket: no request could be matched to it
            return
        old = self._watched.get(key)
        if old is not None:  # that connection is gone (a live one has its own address pair)
            self._drop(old)
        connection = _Connection(transport, key)
        self._watched[key] = connection
        self._arm(connection)

    def started(self, scope: Scope) -> _Connection | None:
        """A request (or WebSocket) reached the app: its connection's deadline is off."""
        key = _key(scope.get("client"), scope.get("server"))
        connection = self._watched.get(key) if key is not None else None
        if connection is not None:
            connection.active += 1
            self._disarm(connection)
        return connection

    def finished(self, connection: _Connection) -> None:
        """A response is done: unless another is in progress, the next headers are due."""
        connection.active -= 1
        if connection.active:
            return
        if connection.transport.is_closing():
            self._drop(connection)
        elif self._watched.get(connection.key) is connection:
            self._arm(connection)

    def forget(self, connection: _Connection) -> None:
        """A WebSocket ended: its connection is not watched any more."""
        connection.active -= 1
        self._drop(connection)

    def _arm(self, connection: _Connection) -> None:
        self._disarm(connection)
        loop = asyncio.get_running_loop()
        connection.deadline = loop.call_later(self.header_timeout, self._expire, connection)

    def _disarm(self, connection: _Connection) -> None:
        if connection.deadline is not None:
            connection.deadline.cancel()
            connection.deadline = None

    def _drop(self, connection: _Connection) -> None:
        self._disarm(connection)
        if self._watched.get(connection.key) is connection:
            del self._watched[connection.key]

    def _expire(self, connection: _Connection) -> None:
        connection.deadline = None
        if connection.active:
            return
        self._drop(connection)
        transport = connection.transport
        if transport.get_write_buffer_size():  # nor does it read its last response
            transport.abort()
        else:
            transport.close()


class GuardProtocol(asyncio.Protocol):
    """uvicorn's ``http`` class: refuses connections beyond the cap, else hands them on.

    Made per server by :class:`ConnectionGuard` (``guard.protocol``); uvicorn calls it
    as it calls its own protocols.
    """

    guard: ClassVar[ConnectionGuard]

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast("asyncio.Transport", transport)
        guard = self.guard
        if len(self.server_state.connections) >= guard.max_connections:
            if not guard.full:
                guard.full = True
                _logger.warning(
                    "Refusing connections: %d are open (max_connections)", guard.max_connections
                )
            stream.write(guard.busy_response)
            stream.close()
            return
        protocol = guard.inner(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
        )
        guard.watch(stream)
        stream.set_protocol(protocol)
        protocol.connection_made(stream)


class _Exchange:
    """One HTTP request through :class:`GuardedApp`: its body deadline and response state."""

    def __init__(
        self, guard: ConnectionGuard, connection: _Connection | None, receive: Receive, send: Send
    ) -> None:
        self.guard = guard
        self.connection = connection
        self._receive = receive
        self._send = send
        self.deadline = asyncio.get_running_loop().time() + guard.body_timeout
        self.body_done = False
        self.response_started = False
        self.timed_out = False
        self.done = False

    async def receive(self) -> Message:
        if self.timed_out:
            return _DISCONNECT
        if self.body_done:
            return await self._receive()
        timeout = asyncio.timeout_at(self.deadline)
        try:
            async with timeout:
                message = await self._receive()
        except TimeoutError:
            if not timeout.expired():
                raise
            await self._time_out()
            return _DISCONNECT
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_done = True
        return message

    async def send(self, message: Message) -> None:
        if self.timed_out:  # the 408 has answered, or the connection is cut
            return
        kind = message["type"]
        if kind == "http.response.start":
            self.response_started = True
        await self._send(message)
        if kind == "http.response.body" and not message.get("more_body", False):
            self.finish()

    def finish(self) -> None:
        if not self.done:
            self.done = True
            if self.connection is not None:
                self.guard.finished(self.connection)

    async def _time_out(self) -> None:
        if self.timed_out:
            return
        self.timed_out = True
        if not self.response_started:
            self.response_started = True
            message = (
                f"the request body did not arrive within {self.guard.body_timeout:g} s of the "
                "request's start; send it whole and at once (the limit is body_timeout, or "
                "--body-timeout)"
            )
            body = json.dumps({"error": "timeout", "message": message}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # uvicorn closes the connection once it is sent
            ]
            await self._send({"type": "http.response.start", "status": 408, "headers": headers})
            await self._send({"type": "http.response.body", "body": body})
            self.finish()
        elif self.connection is not None:
            # The response is under way: it cannot say why, so the connection is cut,
            # and the app returns once uvicorn has seen it go (not "without a response").
            self.connection.transport.abort()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    while (await self._receive())["type"] != "http.disconnect":
                        pass


class GuardedApp:
    """ASGI wrapper: tells the guard when requests start and end; bounds the body's arrival.

    A body not in within *body_timeout* of its request's start is answered 408
    ``{"error": "timeout", ...}`` (if the response has not started; else the connection
    is cut), and the app sees ``http.disconnect``: what it then sends is dropped, and
    an error it raises about that is not an error of the app's.
    """

    def __init__(self, app: ASGIApp, guard: ConnectionGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            # Once upgraded, uvicorn's pings watch it (ws_ping_interval, ws_ping_timeout).
            connection = self.guard.started(scope)
            try:
                await self.app(scope, receive, send)
            finally:
                if connection is not None:
                    self.guard.forget(connection)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _Exchange(self.guard, self.guard.started(scope), receive, send)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if not exchange.timed_out:
                raise
            _logger.debug("The app failed after its request's body timed out", exc_info=True)
        finally:
            exchange.finish()


def guarded_config(
    app: ASGIApp,
    *,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    max_connections: int | None = None,
    timeout_keep_alive: float = KEEP_ALIVE_TIMEOUT,
    **uvicorn_options: Any,
) -> uvicorn.Config:
    """A ``uvicorn.Config`` serving *app* behind a :class:`ConnectionGuard` with these limits.

    *uvicorn_options* go to uvicorn (``http`` picks the protocol the guard hands
    connections to). ``http2``, ``reload`` and ``workers`` are not supported.
    """
    if uvicorn_options.get("http2"):
        raise ValueError("the connection guard serves HTTP/1.1: uvicorn's http2 is not supported")
    if uvicorn_options.get("reload") or (uvicorn_options.get("workers") or 1) > 1:
        raise ValueError(
            "this serves the app in this process: for reload or workers, run uvicorn "
            "itself with an import string"
        )
    http = uvicorn_options.pop("http", "auto")
    proxy_headers = uvicorn_options.pop("proxy_headers", True)
    guard = ConnectionGuard(
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
        http=http,
    )
    guarded = GuardedApp(app, guard)
    options: dict[str, Any] = {"timeout_keep_alive": timeout_keep_alive, **uvicorn_options}
    config = uvicorn.Config(guarded, http=guard.protocol, proxy_headers=False, **options)
    if proxy_headers:
        # uvicorn would rewrite "client" from X-Forwarded-For before the guard sees the
        # request (so it could not find, or could be pointed at, another connection):
        # the same middleware, with the same trusted proxies, goes inside the guard.
        proxied = ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=config.forwarded_allow_ips)
        guarded.app = cast(ASGIApp, proxied)
    return config
