"""``remote()``: an agent on a server, used like a local one (``%agent``, ``show()``, any sink)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .._events import JSON, Cancelled, Custom, Done, Error, Event
from .._run import Run, current_run, start
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
    Each sub-run of the remote run becomes a local sub-run of the same name, with
    its own events and its own end, so a sink shows the remote run's structure
    as it would show the local one. *options* go to ``stream()``.
    """
    label = name or agent

    async def run_remotely(*input: JSON) -> JSON:
        if len(input) > 1:
            raise TypeError(
                f'a remote agent takes one input (sent as the request\'s JSON "input"), '
                f"got {len(input)} arguments"
            )
        async with stream(base_url, agent, *input, **options) as events:
            mirror = _Mirror(current_run())
            async for event in events:  # run_id is known once the first event came
                mirror.root_id = events.run_id
                if event.run_id == events.run_id and event.terminal:
                    await mirror.end_children()
                    return _outcome(event)
                await mirror.route(event)
        raise AssertionError("unreachable: the stream ends with the run's terminal event")

    run_remotely.__name__ = run_remotely.__qualname__ = label
    run_remotely.__doc__ = f"{agent} on {base_url} (remote)"
    run_remotely.__module__ = __package__ or __name__
    return run_remotely


class _Mirror:
    """The local runs that mirror one remote run and its sub-runs, event by event.

    A remote sub-run's first event starts a local child run of the run that
    mirrors its parent (found by path); its events are emitted into that child
    in stream order, and its terminal event ends it the same way (done, error or
    cancelled). Routing waits for each child to start and to end, so the local
    runs see the events in the order the remote stream gave them.
    """

    def __init__(self, root: Run) -> None:
        self.root = root
        self.root_id: str | None = None
        self.runs: dict[str, Run] = {}
        self.by_path: dict[tuple[str, ...], str] = {}
        self.inboxes: dict[str, asyncio.Queue[_Spawn | Event]] = {}  # the live sub-runs'

    async def route(self, event: Event) -> None:
        local = self.root if event.run_id == self.root_id else self.runs.get(event.run_id)
        if local is None:
            local = await self._start(event)
        if event.terminal:
            self.inboxes.pop(event.run_id).put_nowait(event)
            await _ended(local)
        else:
            local.emit(_local_copy(event))

    async def _start(self, event: Event) -> Run:
        parent_id = self.by_path.get(tuple(event.path[:-1]))  # None: the root's child
        inbox: asyncio.Queue[_Spawn | Event] = asyncio.Queue()
        name = event.path[-1] if event.path else "sub-run"
        if parent_id is None:
            child = start(_mirrored, inbox, name=name)
        else:  # started by the parent's own agent, so that it is the parent's child
            made: asyncio.Future[Run] = asyncio.get_running_loop().create_future()
            self.inboxes[parent_id].put_nowait(_Spawn(name, inbox, made))
            child = await made
        self.runs[event.run_id] = child
        self.by_path[tuple(event.path)] = event.run_id
        self.inboxes[event.run_id] = inbox
        return child

    async def end_children(self) -> None:
        """Wait for the local sub-runs (the remote ones ended before their parent)."""
        for run_id, inbox in list(self.inboxes.items()):  # the stream never ended these
            inbox.put_nowait(Cancelled(reason="the remote stream ended before this sub-run"))
            await _ended(self.runs[run_id])


class _Spawn:
    """A request to a mirroring run's agent: start a child run named *name*."""

    __slots__ = ("inbox", "made", "name")

    def __init__(
        self, name: str, inbox: asyncio.Queue[_Spawn | Event], made: asyncio.Future[Run]
    ) -> None:
        self.name, self.inbox, self.made = name, inbox, made


async def _mirrored(inbox: asyncio.Queue[_Spawn | Event]) -> JSON:
    """The agent of a local sub-run: starts its own sub-runs, then ends as the remote one did."""
    while True:
        item = await inbox.get()
        if not isinstance(item, _Spawn):
            return _outcome(item, sub_run=True)
        item.made.set_result(start(_mirrored, item.inbox, name=item.name))


async def _ended(run: Run) -> None:
    """Wait until *run* has ended, whatever its outcome (its terminal event says it)."""
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def mark(_run: Run) -> None:
        if not ended.done():
            ended.set_result(None)

    run.add_done_callback(mark)
    await ended


def _outcome(event: Event, *, sub_run: bool = False) -> JSON:
    """Return or raise as the remote run (or sub-run) ended: its terminal *event*."""
    if isinstance(event, Done):
        return event.result
    if isinstance(event, Error):
        raise RemoteAgentError(event.type, event.message, event.traceback)
    assert isinstance(event, Cancelled)
    if sub_run:  # its parent goes on: the reason is the one the remote sub-run gave
        raise asyncio.CancelledError(event.reason)
    raise asyncio.CancelledError(f"the remote run was cancelled: {event.reason}".rstrip(": "))


def _local_copy(event: Event) -> Event:
    """The event unstamped, to be emitted (and stamped) in the local run."""
    if isinstance(event, Custom):
        return Custom(event.name, event.data)
    make: Callable[..., Event] = type(event)
    return make(**event.payload())
