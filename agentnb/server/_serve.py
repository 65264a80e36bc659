"""``serve()`` and ``python -m agentnb serve``: uvicorn on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import ipaddress
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from ._app import LOCAL_HOSTS, create_app
from ._guard import (
    BODY_TIMEOUT,
    HEADER_TIMEOUT,
    KEEP_ALIVE_TIMEOUT,
    default_max_connections,
    guarded_config,
    raise_open_file_limit,
)
from ._hosts import ANY_HOST

__all__ = ["main", "serve"]


def serve(
    app: FastAPI | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    max_connections: int | None = None,
    timeout_keep_alive: float = KEEP_ALIVE_TIMEOUT,
    **uvicorn_options: Any,
) -> None:
    """Run *app* (default: ``create_app()`` with every registered agent) with uvicorn.

    Binds 127.0.0.1: only this machine can reach it. Pass ``host="0.0.0.0"`` to
    expose the agents to the network (the server has no authentication).

    Slow or idle clients cannot hold it: a connection is closed unless it sends a
    request's headers within *header_timeout* seconds (when new, and after each
    response); a body not in within *body_timeout* seconds of its request's start
    is answered 408 and the connection closed; beyond *max_connections* open
    connections (default: this process's open-file limit less 64, at most 4096) a
    new one is answered 503 and closed at once. *timeout_keep_alive* is uvicorn's:
    seconds an idle connection stays open after a response. Other options go to
    uvicorn (``log_level``, ``ws_ping_interval``, ...).
    """
    config = guarded_config(
        app if app is not None else create_app(),
        host=host,
        port=port,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
        timeout_keep_alive=timeout_keep_alive,
        **uvicorn_options,
    )
    server = uvicorn.Server(config)
    # As uvicorn.run: Ctrl-C stops the server, then reaches here once it has stopped.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _load_app(spec: str) -> FastAPI:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app")
    return app() if callable(app) and not isinstance(app, FastAPI) else app  # type: ignore[no-any-return]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_wildcard(host: str) -> bool:
    ip = _ip(host)
    return host == "" or (ip is not None and ip.is_unspecified)


def _is_loopback(host: str) -> bool:
    ip = _ip(host)
    return host.lower() == "localhost" or (ip is not None and ip.is_loopback)


def _allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host names a server bound to *host* answers: this machine's, *host*, *extra*.

    A wildcard bind (``0.0.0.0``, ``::``) adds no name of its own; ``"*"`` in
    *extra* answers any Host.
    """
    if ANY_HOST in extra:
        return [ANY_HOST]
    own = [] if _is_wildcard(host) else [host.strip("[]")]
    names = list(LOCAL_HOSTS)
    for name in (n.lower() for n in [*own, *extra]):
        if name not in names:
            names.append(name)
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agentnb serve",
        description="Serve agents over SSE and WebSockets, with a page at / to watch them.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="serve this app (or app factory) instead of the demo agents, e.g. myagents:app; "
        "it keeps its own Host guard (create_app(allowed_hosts=[...]))",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests whose Host is NAME (repeatable); the server always answers "
        "127.0.0.1, localhost, ::1 and the --host address (unless 0.0.0.0 or ::). '*' answers any "
        "Host, which lets web pages elsewhere reach the server by DNS rebinding",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT,
        metavar="SECONDS",
        help="close a connection that has not sent a request's headers within this time, "
        f"when new and after each response (default: {HEADER_TIMEOUT:g})",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=BODY_TIMEOUT,
        metavar="SECONDS",
        help="answer 408 and close when a request's body is not in within this time of the "
        f"request's start (default: {BODY_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="open connections at most; one more is answered 503 and closed at once "
        "(default: the open-file limit, raised to its hard limit if need be, less 64; "
        "at most 4096)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share runs with every server on this Redis (e.g. redis://127.0.0.1:6379/0): any "
        "of them streams, resumes, describes, cancels and answers a run another started "
        "(needs agentnb[redis])",
    )
    parser.add_argument(
        "--workers",
        choices=("auto", "always", "never"),
        default="auto",
        help="with --redis: hand runs to workers (python -m agentnb worker) when one offers "
        "the agent (auto, the default), always, or never",
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=30.0,
        help="with --redis: seconds without a sign of a worker before its runs are ended "
        "(default: 30; the same as the workers')",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn's log level (default: info)")
    return parser


def _say(message: str) -> None:
    print(f"agentnb: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.app and args.redis:
        parser.error(
            "--redis builds the demo server's store; an --app brings its own: "
            "create_app(store=agentnb.redis.RedisStore(url))"
        )
    if args.app and args.allow_host:
        parser.error(
            "--allow-host names the demo server's hosts; an --app keeps its own guard: "
            "build it with create_app(allowed_hosts=[...])"
        )
    if args.max_connections is not None and args.max_connections < 1:
        parser.error(f"--max-connections must be at least 1, got {args.max_connections}")
    for flag in ("header_timeout", "body_timeout"):
        if not getattr(args, flag) > 0:
            parser.error(f"--{flag.replace('_', '-')} must be > 0 seconds")
    # This process is the server's own: it may use all the files it is allowed.
    raise_open_file_limit(args.max_connections)
    if args.max_connections is not None and args.max_connections > default_max_connections():
        _say(
            f"--max-connections {args.max_connections} is more than this process's open-file "
            f"limit leaves room for (about {default_max_connections()}): idle connections "
            "could use up its files"
        )
    if args.app:
        sys.path.insert(0, "")
        app = _load_app(args.app)
    else:
        from .. import demo  # noqa: F401  (registers the demo agents)

        allowed = _allowed_hosts(args.host, args.allow_host)
        store = None
        if args.redis:
            try:
                from ..redis import RedisStore
            except ImportError as exc:
                parser.error(str(exc))
            try:
                store = RedisStore(args.redis, lease=args.lease)
            except ValueError as exc:
                parser.error(f"--redis/--lease: {exc}")
        workers = {"auto": None, "always": True, "never": False}[args.workers]
        app = create_app(allowed_hosts=allowed, store=store, workers=workers if store else None)
        if allowed == [ANY_HOST]:
            _say(
                "--allow-host '*': requests naming any Host are answered, so a web page "
                "elsewhere can reach this server by DNS rebinding"
            )
        elif _is_wildcard(args.host) or args.allow_host or args.host not in LOCAL_HOSTS:
            names = ", ".join(allowed)
            if _is_wildcard(args.host):
                _say(
                    f"{args.host or 'all interfaces'} binds every interface, and no name of "
                    f"this machine follows from it: requests are answered only if their Host "
                    f"is one of {names}; add the names clients use with --allow-host NAME "
                    "(repeatable), or answer any Host with --allow-host '*'"
                )
            else:
                _say(
                    f"requests are answered only if their Host is one of {names}; "
                    "add names with --allow-host NAME (repeatable)"
                )
    if not _is_loopback(args.host):
        _say(
            f"serving on {args.host or 'all interfaces'}: anyone who can reach it can run "
            "these agents (there is no authentication)"
        )
    serve(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
    )
    return 0
