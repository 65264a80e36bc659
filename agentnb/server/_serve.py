"""``serve()`` and ``python -m agentnb serve``: uvicorn on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

from ._app import LOCAL_HOSTS, create_app

__all__ = ["main", "serve"]


def serve(
    app: FastAPI | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    **uvicorn_options: object,
) -> None:
    """Run *app* (default: ``create_app()`` with every registered agent) with uvicorn.

    Binds 127.0.0.1: only this machine can reach it. Pass ``host="0.0.0.0"`` to
    expose the agents to the network (the server has no authentication).
    """
    uvicorn.run(app if app is not None else create_app(), host=host, port=port, **uvicorn_options)  # type: ignore[arg-type]


def _load_app(spec: str) -> FastAPI:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app")
    return app() if callable(app) and not isinstance(app, FastAPI) else app  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
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
        help="serve this app (or app factory) instead of the demo agents, e.g. myagents:app",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn's log level (default: info)")
    args = parser.parse_args(argv)
    if args.app:
        sys.path.insert(0, "")
        app = _load_app(args.app)
    else:
        from .. import demo  # noqa: F401  (registers the demo agents)

        local = args.host in LOCAL_HOSTS
        app = create_app(allowed_hosts=LOCAL_HOSTS if local else None)
    if args.host not in LOCAL_HOSTS:
        print(
            f"agentnb: serving on {args.host}: anyone who can reach it can run these agents "
            "(there is no authentication)",
            file=sys.stderr,
        )
    serve(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
