"""The web front: serve agents over Server-Sent Events and WebSockets, with a page to watch them.

::

    from agentnb.server import create_app, serve
    app = create_app(agents=[poet])     # or create_app(): every registered agent
    serve(app)                          # uvicorn on 127.0.0.1:8000; or `python -m agentnb serve`
    server = start_server(app)          # or in a background thread (a notebook): server.url

The agent never touches the network: its events go into the run's replay
buffer, and each client streams them out from there (``POST /api/stream``,
``GET /api/runs/{id}/events`` to resume, ``/api/ws``). An agent's question
(``agentnb.ask``) waits for an answer sent to ``POST /api/runs/{id}/answer``, the
WebSocket or the page. With a Redis store (``create_app(store=RedisStore(url))``)
any number of server processes serve every run, and ``Worker`` processes
(``python -m agentnb worker``) run the agents. Needs the ``server`` extra.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import sse_starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        f"agentnb.server needs the server extra ({exc.name} is missing): "
        "pip install 'agentnb[server]'"
    ) from exc

from ._app import create_app
from ._background import BackgroundServer, start_server
from ._serve import serve

__all__ = ["BackgroundServer", "Worker", "create_app", "serve", "start_server"]


def __getattr__(name: str) -> object:
    if name == "Worker":  # runs agents for servers sharing a Redis store: needs the redis extra
        try:
            from ._workers import Worker
        except ImportError as exc:
            raise ImportError(
                f"agentnb.server.Worker needs the redis extra ({exc.name} is missing): "
                "pip install 'agentnb[redis]'"
            ) from exc
        return Worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
