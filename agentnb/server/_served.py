"""A run the server started: the inline sink that files its events, the listeners that read them.

The agent never touches the network. A :class:`ServedRun` is an inline sink of
its run: ``emit`` hands it each event in the emitting thread; it frames the
event once (SSE bytes; the WebSocket form is cut from them), files the frame in
the run's :class:`ReplayBuffer` and wakes the listeners waiting for it. Each
:class:`Listener` is one client's cursor into the buffer and one wake-up: it
yields everything waiting at once (a fast run is sent in few writes), from any
position, so a late or resuming client gets every event after its
``Last-Event-ID`` exactly once, and several clients can watch one run.

When the last listener of an ``on_disconnect="cancel"`` run goes, the run is
cancelled; a ``"continue"`` run goes on detached.

A served run takes answers (``answers = True``): its questions (``agentnb.ask``, in
the run or any sub-run) wait for an answer sent to the server (:meth:`ServedRun.answer`),
also while nobody watches. The ``ask`` events of the open questions are kept, to
describe the run with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from .._events import JSON, Answer, Ask, Event
from .._exceptions import InvalidAnswer
from .._run import Run
from . import _buffer
from ._buffer import Cursor, ReplayBuffer
from ._errors import BadEventId, Ended, Expired, refused
from ._wire import sse_data, sse_frame, ws_event

if TYPE_CHECKING:
    from ..redis import RunWriter
    from ._hub import RunHub

__all__ = ["Listener", "OnDisconnect", "ServedRun"]

OnDisconnect = Literal["cancel", "continue"]

logger = logging.getLogger("agentnb.server")


class ServedRun:
    """One run started by the server: its replay buffer and its listeners (see the module)."""

    inline = True  # called by emit itself: see agentnb's sink protocol
    answers = True  # its questions wait for an answer sent to the server
    metadata: Mapping[str, JSON] | None = None  # given to its run at start (Run.metadata)
    writer: RunWriter | None = None  # with a store: its frames go to Redis too
    announced: asyncio.Task[None] | None = None  # with a store: its record is being written
    request: tuple[str, str] | None = None  # a worker's run: its request (stream, entry id)

    def __init__(
        self, hub: RunHub, agent: str, on_disconnect: OnDisconnect, buffer: ReplayBuffer
    ) -> None:
        self.hub = hub
        self.agent = agent
        self.on_disconnect: OnDisconnect = on_disconnect
        self.buffer = buffer
        self.run: Run | None = None  # until it ends (then only its status is kept)
        self.id = ""
        self.ended = False  # the run's own terminal event is buffered
        self.ended_at = 0.0
        self._status = "pending"
        self._lock = threading.Lock()  # send() may run in a worker thread of the agent
        self._waiting: list[Listener] = []  # listeners parked until the next frame
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._asked: dict[str, Ask] = {}  # ask id -> the ask event sent, until answered

    def __repr__(self) -> str:
        return (
            f"<ServedRun {self.agent} id={self.id} events={self.count} listeners={self.listeners}>"
        )

    @property
    def listeners(self) -> int:
        """How many clients are attached (streaming the run, or about to)."""
        return self.buffer.readers

    @property
    def count(self) -> int:
        """How many events the run has produced so far."""
        return self.buffer.count

    @property
    def status(self) -> str:
        return self.run.status if self.run is not None else self._status

    # -- the sink side (called by emit, in order, under the run's lock) ----------

    def open(self, run: Run) -> None:
        self.run = run
        self.id = run.id
        self._status = run.status
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        shared = self.hub.shared
        if shared is not None:
            self.writer = shared.store.writer(run.id)

    def send(self, event: Event) -> None:
        terminal = event.terminal and event.run_id == self.id
        if isinstance(event, Ask):
            self._asked[event.ask_id] = event
            if self.hub.shared is not None:  # any process finds the run by the question
                self._on_loop(self.hub.shared.asked, self.id, event.ask_id)
        elif isinstance(event, Answer):
            self._asked.pop(event.ask_id, None)
        frame = sse_frame(event, event.to_json(), self.id, self.buffer.count)
        added = self.buffer.append(frame, last=terminal)
        if self.writer is not None:
            self._store(frame, terminal)
        with self._lock:
            waiting, self._waiting = self._waiting, []
        if waiting:
            self._on_loop(_wake_all, waiting)
        self.hub.budget.add(added)
        if terminal:  # always on the run's own loop: the run's task emits it
            run, self.run = self.run, None  # its result and exception are not kept
            assert run is not None
            self._status = run.status
            self.ended = True
            self.ended_at = time.monotonic()
            self._asked = {}
            self.hub._ended(self)
            if self.hub.shared is not None:
                self.hub.shared.ended(self)  # its last frames flushed, its record updated

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Call *fn* on the run's loop: now if this is its thread (send may run in any)."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                self._loop.call_soon_threadsafe(fn, *args)

    def _store(self, frame: bytes, terminal: bool) -> None:
        writer = self.writer
        assert writer is not None
        try:
            writer.append(frame, last=terminal)
        except Exception as exc:  # Redis failed: the run goes on, served from memory here
            self.writer = None
            logger.warning("agentnb: run %s is no longer stored in Redis: %s", self.id, exc)

    def wake_all(self) -> None:
        """Wake every parked listener (on the loop): one was cut off, or the run is gone."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        _wake_all(waiting)

    # -- the listener side (on the loop) -----------------------------------------

    def listen(self, after: int = -1) -> Listener:
        """A listener of the events after position *after* (-1: from the first)."""
        if after >= self.count:
            raise BadEventId(
                f"run {self.id} has sent {self.count} events (ids {self.id}:0 to "
                f"{self.id}:{self.count - 1}); Last-Event-ID {self.id}:{after} is past the end"
            )
        try:
            cursor = self.buffer.attach(after + 1)
        except _buffer.Expired as exc:
            raise self.hub.expired(self, exc.first) from None
        return Listener(self, cursor)

    def _read(self, listener: Listener) -> tuple[list[bytes], asyncio.Future[None] | None]:
        """The frames the listener has not had, or a future for the next one (parked).

        Reading and parking happen under one lock, and send files its frame before
        it takes the parked listeners under that lock: a frame sent from another
        thread in between cannot slip past a listener going to sleep.
        """
        with self._lock:
            frames = self.buffer.advance(listener.cursor)  # raises _buffer.Expired
            if frames or self.buffer.ended:
                return frames, None
            assert self._loop is not None  # open() ran before anyone could listen
            waiter = listener._waiter = self._loop.create_future()
            self._waiting.append(listener)
            return frames, waiter

    def _detach(self, listener: Listener) -> None:
        self.buffer.detach(listener.cursor)
        if not self.buffer.readers and self.on_disconnect == "cancel" and self.run is not None:
            if self.hub.shared is not None:  # clients of other processes count too
                self.hub.shared.unwatched(self)
            else:
                self.run.cancel("the client disconnected")

    def answer(self, ask_id: str, value: str, by: str) -> None:
        """Answer the open question *ask_id* of the run or a sub-run; raises the ApiError
        that says why not (the question, if open, keeps waiting)."""
        run = self.run
        if run is None:
            raise Ended.run(self.id, self.status)
        try:
            run.answer(ask_id, value, by=by)
        except InvalidAnswer as exc:
            raise refused(exc) from None

    def asking(self, ask_id: str) -> bool:
        """Whether the run (or a sub-run) still waits for an answer to *ask_id*."""
        run = self.run
        return run is not None and any(q.ask_id == ask_id for q in run.questions)

    def questions(self) -> list[JSON]:
        """The ask events (their JSON forms) of the questions still waiting for an answer."""
        run = self.run
        if run is None:
            return []
        asked = dict(self._asked)  # (send may add one in another thread meanwhile)
        sent = (asked.get(question.ask_id) for question in run.questions)
        return [event.to_dict() for event in sent if event is not None]

    def describe(self) -> dict[str, JSON]:
        return {
            "run_id": self.id,
            "agent": self.agent,
            "status": self.status,
            "events": self.count,
            "listeners": self.listeners,
            "on_disconnect": self.on_disconnect,
            "questions": self.questions(),
        }


def _wake_all(listeners: list[Listener]) -> None:
    for listener in listeners:
        listener._wake()


class Listener:
    """One client's read position in a served run; counts as a listener until closed.

    ``async for frames in listener`` yields lists of new SSE frames (all that
    are waiting) and ends after the run's own terminal event, or when the client
    fell too far behind (``expired``: its stream ends; a resume says why).
    ``close()`` is idempotent and must be called (the responses call it in a
    ``finally``): it applies the run's ``on_disconnect`` policy.
    """

    def __init__(self, served: ServedRun, cursor: Cursor) -> None:
        self.served = served
        self.cursor = cursor
        self.closed = False
        self.expired = False  # ended because it fell further behind than the buffer keeps
        self._waiter: asyncio.Future[None] | None = None  # while parked

    @property
    def position(self) -> int:
        """The next frame to send it."""
        return self.cursor.position

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():  # (done: the task was cancelled)
            waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[bytes]]:
        served = self.served
        while not self.closed:
            try:
                frames, waiter = served._read(self)
            except _buffer.Expired:
                self.expired = True  # a stalled client: end; a resume answers 410 and says why
                return
            if frames:
                yield frames
            elif waiter is None:
                return  # the run has ended and everything was sent
            else:
                try:
                    await waiter
                finally:
                    self._waiter = None

    async def ws_messages(self) -> AsyncIterator[list[str]]:
        """The batches as WebSocket text frames (the JSON cut from each SSE frame)."""
        run_id = self.served.id
        async for frames in self:
            n = self.position - len(frames)
            yield [ws_event(sse_data(frame), run_id, n + i) for i, frame in enumerate(frames)]

    async def events(self) -> AsyncIterator[list[Event]]:
        """The batches as events, rebuilt from each frame's JSON (for protocol encoders)."""
        async for frames in self:
            yield [Event.from_json(sse_data(frame)) for frame in frames]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.served._detach(self)

    def leave(self) -> None:
        """Stop listening without applying ``on_disconnect``: the client left on purpose
        (an AG-UI interrupt ends its response while the run waits for the resume)."""
        if not self.closed:
            self.closed = True
            self.served.buffer.detach(self.cursor)

    def expired_error(self) -> Expired:
        return Expired.behind(self.served.id)
