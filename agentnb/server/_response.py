"""``RunEventStream``: the SSE response of one listener of a served run, whatever it speaks.

Everything waiting goes out in one write, through sse-starlette's own path (its ping,
its *send_timeout*: a client whose socket stays full that long is cut off, so it no
longer counts as a listener). However the response ends it releases its listener:
``close()`` applies the run's ``on_disconnect`` (a client gone mid-run cancels a run
no one else watches), unless the body left on purpose first (``Listener.leave()``: a
protocol's response ended at a question while the run waits for the answer). When the
server shuts down (sse-starlette sees uvicorn's exit signal), the hub cancels its live
runs, so the stream still ends with the run's end instead of being cut (within a grace
period).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import anyio
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from ._served import Listener
from ._stored import StoreListener

__all__ = ["RunEventStream"]

SHUTDOWN_GRACE = 5.0  # seconds a stream has to send its run's end when the server stops


async def _frames(listener: Listener | StoreListener) -> AsyncIterator[bytes]:
    # Each event is its own SSE event, but a fast agent costs few writes.
    async for frames in listener:
        yield frames[0] if len(frames) == 1 else b"".join(frames)


class RunEventStream(EventSourceResponse):
    """See the module. *body* defaults to the listener's own SSE frames (agentnb's
    wire format); a protocol passes its encoded frames, and ``sep="\\n"`` where its
    clients read LF only (pings included)."""

    def __init__(
        self,
        listener: Listener | StoreListener,
        *,
        ping: float,
        send_timeout: float | None,
        body: AsyncIterator[bytes] | None = None,
        sep: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        shutdown = anyio.Event()

        async def on_shutdown() -> None:
            await shutdown.wait()
            listener.served.hub.begin_shutdown()

        super().__init__(
            _frames(listener) if body is None else body,
            ping=ping,
            sep=sep,
            send_timeout=send_timeout,
            headers={**(headers or {}), "X-Agentnb-Run-Id": listener.served.id},
            data_sender_callable=on_shutdown,
            shutdown_event=shutdown,
            shutdown_grace_period=SHUTDOWN_GRACE,
        )
        self.listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.listener.close()  # nothing, after a leave()
