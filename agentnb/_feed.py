"""Feeding a sink from its outlet, in its own task; reporting sinks that fail or get stuck."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import TYPE_CHECKING

from ._events import Event
from ._exceptions import SinkStuck
from ._fanout import take
from ._outlet import Outlet
from ._sinks import Delivery, call_maybe_async

if TYPE_CHECKING:
    from ._run import Run

__all__: list[str] = []  # the engine's parts, not public API

logger = logging.getLogger("agentnb")


_TURN = 0.01  # seconds a synchronous sink may hold the loop before the feeder lets others run


async def feed(run: Run, outlet: Outlet, delivery: Delivery) -> None:
    """Deliver *outlet*'s events to one sink, in order, until *run*'s terminal event.

    A synchronous ``send`` runs on the loop: after each ``_TURN`` of them the feeder
    lets the loop's other tasks run, so a burst does not hold the loop for its
    whole length. A ``blocking`` sink's ``send`` runs in a worker thread instead.
    """
    buffer = outlet.buffer
    send = delivery.send
    owner = outlet.owner_id
    loop = asyncio.get_running_loop()
    failed = False
    turn_ends = time.monotonic() + _TURN
    try:
        while True:
            while buffer:
                event = take(outlet)
                if not failed:
                    try:
                        if delivery.blocking:
                            result = await loop.run_in_executor(None, send, event)
                        else:
                            result = send(event)
                        if result is not None and inspect.isawaitable(result):
                            await result
                        elif time.monotonic() > turn_ends:
                            await asyncio.sleep(0)
                            turn_ends = time.monotonic() + _TURN
                    except Exception as exc:  # reported; the other sinks go on
                        failed = True
                        report_sink_error(run, delivery.sink, delivery.label, exc, event)
                if event.terminal and event.run_id == owner:
                    return
            await outlet.wait()
            turn_ends = time.monotonic() + _TURN
    finally:
        if delivery.close is not None:
            try:
                await call_maybe_async(delivery.close)
            except Exception as exc:
                report_sink_error(run, delivery.sink, delivery.label, exc, None)


def report_sink_error(
    run: Run, sink: object, label: str, exc: Exception, event: Event | None
) -> None:
    """Log that *sink* (called *label*) failed in *run*, and keep it in ``run.sink_errors``."""
    run.sink_errors.append((sink, exc))
    if isinstance(exc, SinkStuck):
        logger.error("agentnb: run %s: %s", "/".join(run.path), exc)
        return
    when = f"on event seq={event.seq} ({event.kind})" if event is not None else "on close"
    logger.error(
        "agentnb: sink %s raised %s %s of run %s; it gets no more events of this run, "
        "the other sinks go on.",
        label,
        type(exc).__name__,
        when,
        "/".join(run.path),
        exc_info=exc,
    )
