"""``remote()``: an agent on a server, used like a local one (``%agent``, ``show()``, any sink)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .._events import JSON, Cancelled, Custom, Done, Error, Event, Status
from .._run import current_run
from ._exceptions import RemoteAgentError
from ._stream import stream

__all__ = ["remote"]


def remote(
    base_url: str, agent: str, *, name: str | None = None, **options: Any
) -> Callable[..., Awaitable[JSON]]:
    """A local agent that runs *agent* on the agentnb server at *base_url*.

    Its run re-emits the remote events as they arrive, so every local sink shows
    the remote run live: ``await agentnb.notebook.show(remote(url, "poet"), "the
    sea")``. It returns the remote result, raises ``RemoteAgentError`` (with the
    remote traceback) if the remote agent raised, and ends cancelled if the
    remote run was cancelled. Cancelling the local run cancels the remote one.
    Events of the remote run's sub-agents arrive in the same local run, and a
    sub-agent's end shows as a status line. *options* go to ``stream()``.
    """
    label = name or agent

    async def run_remotely(*input: JSON) -> JSON:
        if len(input) > 1:
            raise TypeError(
                f'a remote agent takes one input (sent as the request\'s JSON "input"), '
                f"got {len(input)} arguments"
            )
        run = current_run()
        async with stream(base_url, agent, *input, **options) as events:
            async for event in events:
                if event.run_id == events.run_id and event.terminal:
                    return _outcome(event)
                run.emit(_local_copy(event))
        raise AssertionError("unreachable: the stream ends with the run's terminal event")

    run_remotely.__name__ = run_remotely.__qualname__ = label
    run_remotely.__doc__ = f"{agent} on {base_url} (remote)"
    run_remotely.__module__ = __package__ or __name__
    return run_remotely


def _outcome(event: Event) -> JSON:
    if isinstance(event, Done):
        return event.result
    if isinstance(event, Error):
        raise RemoteAgentError(event.type, event.message, event.traceback)
    assert isinstance(event, Cancelled)
    raise asyncio.CancelledError(f"the remote run was cancelled: {event.reason}".rstrip(": "))


def _local_copy(event: Event) -> Event:
    """The event unstamped, to be emitted (and stamped) in the local run."""
    if event.terminal:  # a remote sub-agent ended: not this run's end
        detail = f": {event.payload().get('message') or event.payload().get('reason') or ''}"
        return Status(f"{'/'.join(event.path)} {event.kind}{detail.rstrip(': ')}")
    if isinstance(event, Custom):
        return Custom(event.name, event.data)
    make: Callable[..., Event] = type(event)
    return make(**event.payload())
