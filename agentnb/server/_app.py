"""``create_app()``: the FastAPI app that serves agents over SSE and WebSockets, and the page."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse
from sse_starlette.sse import AppStatus
from starlette.exceptions import HTTPException

from .._adapt import framework_agent
from .._registry import AgentInfo, AgentLike, agent_name, describe
from .._version import __version__
from ._agui import agui_routes
from ._ai_sdk import ai_sdk_routes
from ._errors import ApiError
from ._hosts import AllowedHosts, host_names
from ._hub import MiB, RunHub
from ._requests import parse_answer, parse_start, read_json
from ._response import RunEventStream
from ._wire import parse_event_id
from ._ws import serve_websocket

if TYPE_CHECKING:
    from ..redis import RedisStore

__all__ = ["LOCAL_HOSTS", "create_app"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The Host names ``create_app`` accepts by default: this machine's."""

AgentsArg = Iterable[AgentLike | AgentInfo] | Mapping[str, AgentLike] | None
"""Agents: functions, AgentInfo, or framework agents (a pydantic-ai Agent, a LangGraph graph)."""

# The page loads its script and style from this server only: even if agent text
# reached the DOM as markup, no inline script or handler would run.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_STATIC = {
    "/": ("page.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),  # what browsers ask for unprompted
}


def _agent_table(agents: AgentsArg) -> dict[str, AgentInfo] | None:
    if agents is None:
        return None
    pairs = list(agents.items()) if isinstance(agents, Mapping) else [(None, a) for a in agents]
    items: list[AgentInfo] = []
    for name, agent in pairs:
        if isinstance(agent, AgentInfo):
            items.append(agent)
            continue
        # A framework's agent (pydantic-ai, OpenAI Agents SDK, LangGraph) runs through its adapter.
        fn = framework_agent(agent) or agent
        if not callable(fn):
            raise TypeError(f"create_app(agents=...): {name or fn!r} is not an agent: {fn!r}")
        items.append(AgentInfo(name or agent_name(fn), fn, describe(fn)))
    for info in items:
        if not callable(info.fn):
            raise TypeError(f"create_app(agents=...): {info.name!r} is not callable: {info.fn!r}")
    return {info.name: info for info in items}


def create_app(
    agents: AgentsArg = None,
    *,
    replay_size: int = 10_000,
    keep_finished: int = 1000,
    keep_seconds: float = 300.0,
    max_body: int = 1 << 20,
    ping: float = 15.0,
    allowed_hosts: Sequence[str] = LOCAL_HOSTS,
    max_buffer: int = 256 * MiB,
    send_timeout: float | None = 10.0,
    store: RedisStore | None = None,
    workers: bool | None = None,
) -> FastAPI:
    """A FastAPI app serving *agents* (default: every registered agent, looked up live).

    *agents* is a list of agents (functions, or ``AgentInfo``) or a mapping of
    name to agent. Each run keeps its last *replay_size* events (and at most an
    eighth of *max_buffer* bytes) for resuming; finished runs stay resumable
    *keep_seconds* (at most *keep_finished* of them). All buffered events, live
    and finished, cost at most *max_buffer* bytes (default 256 MiB): finished runs
    are dropped oldest first, and while live runs alone fill it, new runs are
    refused with 503. A client whose socket stays full for *send_timeout* seconds
    is cut off. Request bodies over *max_body* bytes are refused; SSE streams send
    a keep-alive comment every *ping* seconds. Requests must name this machine in
    their Host header (*allowed_hosts*, e.g. ``["agents.example.com"]``; ``["*"]``
    for any), so a web page elsewhere cannot reach a local server by DNS
    rebinding. With a *store* (``agentnb.redis.RedisStore(url)``) any number of
    server processes on one Redis serve every run: the process that starts a run
    runs its agent and writes its events to Redis; any process streams, resumes,
    describes, cancels and answers it (the app closes the store when it stops).
    With a store, runs may go to workers (``python -m agentnb worker``): *workers*
    None (the default) hands a run to them when a live worker offers its agent, and
    runs it here otherwise; True always (queued until a worker takes it); False never.
    Serve it with ``agentnb.server.serve(app)`` (timeouts and a connection cap
    included) or any ASGI server; bind it to 127.0.0.1 unless you mean to expose
    your agents.
    """
    if allowed_hosts is None:
        raise TypeError(
            "create_app(allowed_hosts=None): the Host guard cannot be switched off by "
            "leaving it out; pass the names this server answers to (e.g. "
            "['agents.example.com']), or ['*'] to answer to any Host"
        )
    hosts = list(allowed_hosts)
    host_names(hosts)  # refused now, not at the first request
    hub = RunHub(
        _agent_table(agents),
        replay_size=replay_size,
        keep_finished=keep_finished,
        keep_seconds=keep_seconds,
        max_buffer=max_buffer,
        store=store,
        workers=workers,
    )
    shared = hub.shared
    if workers is not None and store is None:
        raise TypeError(f"create_app(workers={workers}) needs a store: store=RedisStore(url)")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Served again after a stop (a notebook restarting its server): take runs
        # again, and forget sse-starlette's process-wide "exiting" flag of the
        # previous server (it is never reset, and would end every new stream).
        hub.closing = False
        AppStatus.should_exit = False
        if shared is not None:
            await shared.start()
        yield
        await hub.aclose()
        if shared is not None:
            await shared.aclose()

    app = FastAPI(
        title="agentnb",
        version=__version__,
        summary="Watch AI agents work: runs streamed over Server-Sent Events and WebSockets.",
        lifespan=lifespan,
    )
    app.state.hub = hub
    # A page on another site can point its own name at 127.0.0.1 (DNS rebinding); its
    # requests then carry that name as Host, and are refused here.
    app.add_middleware(AllowedHosts, allowed_hosts=hosts)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 404:
            message += "; the API is under /api (see /docs)"
        return JSONResponse(
            {"error": code, "message": message}, status_code=exc.status_code, headers=exc.headers
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)

    @app.get("/api/agents")
    async def list_served_agents() -> list[dict[str, str]]:
        """The agents this server runs (itself, or on the workers of its store)."""
        agents = {name: info.description for name, info in hub.agents.items()}
        if shared is not None and shared.workers is not False:
            agents.update(await shared.worker_agents())
        return [{"name": name, "description": text} for name, text in sorted(agents.items())]

    @app.post("/api/stream", response_class=EventSourceResponse)
    async def stream_run(request: Request) -> Response:
        """Start a run and stream its events (``text/event-stream``).

        Body: ``{"agent": "poet", "input": "the sea", "on_disconnect": "cancel"}``.
        """
        start = parse_start(await read_json(request, max_body))
        listener = await hub.open(start.agent, start.args, start.on_disconnect)
        return RunEventStream(listener, ping=ping, send_timeout=send_timeout)

    @app.get("/api/runs/{run_id}/events", response_class=EventSourceResponse)
    async def resume_run(request: Request, run_id: str) -> Response:
        """Stream a run's events after ``Last-Event-ID`` (header or ``last_event_id`` query)."""
        served = hub.find(run_id)
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        after = parse_event_id(last, run_id) if last else -1
        if served is None:  # another process's run: read from the store
            assert shared is not None
            listener = await shared.listen(run_id, after)
            return RunEventStream(listener, ping=ping, send_timeout=send_timeout)
        return RunEventStream(served.listen(after), ping=ping, send_timeout=send_timeout)

    @app.get("/api/runs/{run_id}")
    async def describe_run(run_id: str) -> dict[str, Any]:
        """A run's state: status, events so far, listeners, the questions waiting for an answer."""
        served = hub.find(run_id)
        if served is None:
            assert shared is not None
            return await shared.describe(run_id)
        return served.describe()

    @app.post("/api/runs/{run_id}/answer")
    async def answer_question(request: Request, run_id: str) -> Response:
        """Answer a question of the run or of a sub-run (its ``ask`` event's ``ask_id``).

        Body: ``{"ask_id": "...", "value": "yes", "by": "http"}`` (``by``: http, page, cell or
        default). Exactly one answer is taken: 404 for an unknown question, 409 for one already
        answered or whose run has ended, 422 for a value outside its choices.
        """
        served = hub.find(run_id)
        answer = parse_answer(await read_json(request, max_body))
        if served is None:
            assert shared is not None
            taken = await shared.answer(run_id, answer.ask_id, answer.value, answer.by)
            return Response(json.dumps(taken), media_type="application/json")
        served.answer(answer.ask_id, answer.value, answer.by)
        taken = {"run_id": run_id, "ask_id": answer.ask_id, "value": answer.value, "by": answer.by}
        # ASCII escapes: an answer may hold a lone surrogate (valid JSON, not UTF-8).
        return Response(json.dumps(taken), media_type="application/json")

    @app.post("/api/runs/{run_id}/cancel")
    async def cancel_run(run_id: str) -> dict[str, Any]:
        """Cancel a run (its stream ends with a ``cancelled`` event); idempotent."""
        served = hub.find(run_id)
        if served is None:  # another process runs it: the request goes there
            assert shared is not None
            return await shared.cancel(run_id)
        if served.run is not None:
            served.run.cancel("cancelled by a client")
        return served.describe()

    @app.websocket("/api/ws")
    async def websocket(socket: WebSocket) -> None:
        await serve_websocket(socket, hub, max_body, send_timeout)

    agui_routes(app, hub, max_body=max_body, ping=ping, send_timeout=send_timeout)

    ai_sdk_routes(app, hub, max_body=max_body, ping=ping, send_timeout=send_timeout)

    page = resources.files(__package__).joinpath("static")
    for path, (name, media_type) in _STATIC.items():
        _add_static(app, path, page.joinpath(name).read_bytes(), media_type)
    return app


def _add_static(app: FastAPI, path: str, content: bytes, media_type: str) -> None:
    headers = {"Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff"}

    async def static() -> Response:
        return Response(content, media_type=media_type, headers=headers)

    app.add_api_route(path, static, methods=["GET"], include_in_schema=False, name=path)
