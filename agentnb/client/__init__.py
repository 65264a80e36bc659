"""Watch a run on an agentnb server from Python: the same typed events, resumed after a drop.

::

    async for event in agentnb.client.stream("http://127.0.0.1:8000", "poet", "the sea"):
        print(event)

    # In a notebook cell: the remote run, live, through the notebook sink
    poet = agentnb.client.remote("http://127.0.0.1:8000", "poet")
    await agentnb.notebook.show(poet, "the sea")

    # Answer a remote run's question (an ``ask`` event), from anywhere
    await agentnb.client.answer("http://127.0.0.1:8000", run_id, ask_id, "yes")

    # Any AG-UI agent (pydantic-ai, LangGraph, ...) as a local agent: %%agent, run, stream
    adder = agentnb.client.agui("http://127.0.0.1:8001/")

Needs the ``client`` extra (httpx, httpx-sse): ``pip install 'agentnb[client]'``.
"""

from __future__ import annotations

try:
    import httpx  # noqa: F401
    import httpx_sse  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        f"agentnb.client needs the client extra ({exc.name} is missing): "
        "pip install 'agentnb[client]'"
    ) from exc

from ._agui import AGUIAgent, AGUIProtocolError, agui
from ._exceptions import ConnectionLost, RemoteAgentError, ServerError
from ._remote import remote
from ._stream import RemoteStream, answer, cancel, resume, stream

__all__ = [
    "AGUIAgent",
    "AGUIProtocolError",
    "ConnectionLost",
    "RemoteAgentError",
    "RemoteStream",
    "ServerError",
    "agui",
    "answer",
    "cancel",
    "remote",
    "resume",
    "stream",
]
