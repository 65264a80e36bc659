"""``remote()``: an agent on a server, used like a local one (``%agent``, ``show()``, any sink)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .._ask import Pending, answerable, expect, reopen, settled
from .._events import JSON, Answer, Ask, Cancelled, Custom, Done, Error, Event
from .._exceptions import NoAnswer
from .._mirror import Mirror
from .._run import Run, current_run
from ._exceptions import RemoteAgentError, ServerError
from ._stream import RemoteStream, stream

__all__ = ["remote"]

_log = logging.getLogger("agentnb")


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

    A remote question (``agentnb.ask`` in the remote agent) is asked here: a local front
    end that takes answers (the cell's view) answers it, and the answer goes to the
    server. Where nothing local can answer (a headless notebook), the question's default
    is sent; without one the local run raises ``NoAnswer`` (which cancels the remote run).
    """
    label = name or agent

    async def run_remotely(*input: JSON) -> JSON:
        if len(input) > 1:
            raise TypeError(
                f'a remote agent takes one input (sent as the request\'s JSON "input"), '
                f"got {len(input)} arguments"
            )
        async with stream(base_url, agent, *input, **options) as events:
            mirror = _Mirror(current_run(), events)
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

    A remote sub-run's first event opens a local mirror run under the one that mirrors
    its parent (found by path); its events are emitted into it in stream order, and its
    terminal event ends it the same way (done, error or cancelled). Routing waits for
    each mirror to end, so the local runs see the events in the remote stream's order.
    """

    def __init__(self, root: Run, events: RemoteStream) -> None:
        self.root = root
        self.events = events
        self.root_id: str | None = None
        self.live: dict[str, Mirror] = {}  # by remote run id
        self.by_path: dict[tuple[str, ...], str] = {}
        self.sending: set[asyncio.Future[None]] = set()  # answers on their way

    async def route(self, event: Event) -> None:
        if event.run_id == self.root_id:
            self._emit(self.root, event)
            return
        mirror = self.live.get(event.run_id) or self._open(event)
        if not event.terminal:
            self._emit(mirror.run, event)
            return
        del self.live[event.run_id]
        try:
            result = _outcome(event, sub_run=True)
        except BaseException as exc:  # the remote sub-run's end, passed on
            mirror.end(error=exc)
        else:
            mirror.end(result)
        await mirror.ended()

    def _open(self, event: Event) -> Mirror:
        parent = self.live.get(self.by_path.get(tuple(event.path[:-1]), ""))
        name = event.path[-1] if event.path else "sub-run"
        mirror = parent.child(name) if parent is not None else Mirror(self.root, name)
        self.live[event.run_id] = mirror
        self.by_path[tuple(event.path)] = event.run_id
        return mirror

    def _emit(self, run: Run, event: Event) -> None:
        local = _local_copy(event)
        if isinstance(local, Ask):
            self._asked(run, local)
        elif isinstance(local, Answer):
            settled(run, local.ask_id)
        run.emit(local)

    def _asked(self, run: Run, question: Ask) -> None:
        """Make a remote question answerable in *run*, or answer it with its default."""
        if not answerable(run):
            if question.default is None:
                raise NoAnswer(
                    f"the remote question {question.prompt!r} got no answer: no one can answer "
                    "here (a headless run), and it has no default"
                )
            self._send(question.ask_id, question.default, "default", None)
            return
        pending: list[Pending] = []
        loop = asyncio.get_running_loop()

        def forward(value: str, by: str) -> None:  # on the answering thread
            sent_by = by if by in ("cell", "page") else "http"
            loop.call_soon_threadsafe(self._send, question.ask_id, value, sent_by, pending[0])

        pending.append(expect(run, question, forward))

    def _send(self, ask_id: str, value: str, by: str, pending: Pending | None) -> None:
        task = asyncio.ensure_future(self._post(ask_id, value, by, pending))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _post(self, ask_id: str, value: str, by: Any, pending: Pending | None) -> None:
        try:
            await self.events.answer(ask_id, value, by=by)
        except (ServerError, OSError) as exc:
            # Answered elsewhere first (409) is the race lost; anything else leaves the
            # remote question open, so it can be answered here again.
            if pending is not None and not (isinstance(exc, ServerError) and exc.status == 409):
                reopen(pending)
            _log.warning(
                "the answer %r to the remote question %s was not taken: %s", value, ask_id, exc
            )

    async def end_children(self) -> None:
        """End the local sub-runs the stream never ended (the remote ones ended first)."""
        for run_id in reversed(list(self.live)):  # the deepest first
            mirror = self.live.pop(run_id)
            mirror.end(error=asyncio.CancelledError("the remote stream ended before this sub-run"))
            await mirror.ended()


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
