"""Emitting a native stream's parts as agentnb events, and keeping what they add up to.

Every adapter (``agentnb.adapters.*``) reads its SDK's stream and calls an
:class:`Assembler`: ``text``, ``reasoning``, ``tool_start`` / ``tool_delta`` /
``tool_end``, ``usage``, message boundaries. The assembler emits the events into
the run as they arrive and keeps the text, reasoning and tool calls, so the
adapter can build the SDK's own final object and tests can compare the two. It
knows no SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._events import JSON, Event, TextChunk, ToolCall, ToolResult
from ._events_stream import (
    MessageEnd,
    MessageStart,
    Reasoning,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from ._exceptions import RunClosed

if TYPE_CHECKING:
    from ._run import Run

__all__: list[str] = []  # what the adapters build on, not public API


@dataclass(slots=True)
class StreamedCall:
    """A tool call as it streamed: its name, id, argument text and (once ended) its args."""

    call_id: str
    name: str
    message_id: str = ""
    arguments: list[str] = field(default_factory=list)
    args: dict[str, JSON] | None = None  # set by tool_end

    @property
    def text(self) -> str:
        return "".join(self.arguments)


def parse_arguments(text: str) -> tuple[dict[str, JSON], str]:
    """A tool call's argument text as a dict, and '' or why it is not a JSON object.

    Empty text is no arguments; a JSON value that is not an object is kept as
    ``{"input": value}``; text that is not JSON at all as ``{"_raw": text}``.
    """
    if not text.strip():
        return {}, ""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return {"_raw": text}, f"the arguments are not JSON: {exc}"
    if isinstance(value, dict):
        return value, ""
    return {"input": value}, f"the arguments are JSON but not an object: {type(value).__name__}"


@contextlib.contextmanager
def interrupted(assembler: Assembler) -> Iterator[None]:
    """Around reading a stream: if it fails, ``assembler.interrupt`` ends what it left open."""
    try:
        yield
    except BaseException as exc:
        assembler.interrupt(exc)
        raise


class Assembler:
    """One native stream's parts, emitted into *run* as they come and kept whole."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._emit = run.emit
        self.texts: dict[str, list[str]] = {}
        self.reasonings: dict[str, list[str]] = {}
        self.signatures: dict[str, str] = {}
        self.calls: dict[str, StreamedCall] = {}
        self.usages: list[Usage] = []
        self._open_messages: list[str] = []

    # -- emitting -------------------------------------------------------------

    def emit(self, event: Event | str) -> None:
        self._emit(event)

    def message_start(self, message_id: str, role: str = "assistant") -> None:
        if message_id in self._open_messages:
            return
        self._open_messages.append(message_id)
        self._emit(MessageStart(message_id, role))

    def message_end(self, message_id: str, finish_reason: str = "") -> None:
        if message_id not in self._open_messages:
            return
        self._open_messages.remove(message_id)
        self._emit(MessageEnd(message_id, finish_reason or ""))

    def end_messages(self, finish_reason: str = "") -> None:
        for message_id in list(self._open_messages):
            self.message_end(message_id, finish_reason)

    def text(self, delta: str, message_id: str = "") -> None:
        if not delta:
            return
        self.texts.setdefault(message_id, []).append(delta)
        self._emit(TextChunk(delta, message_id) if message_id else delta)

    def reasoning(
        self, delta: str = "", message_id: str = "", signature: str | None = None
    ) -> None:
        if not delta and signature is None:
            return
        if delta:
            self.reasonings.setdefault(message_id, []).append(delta)
        if signature is not None:
            self.signatures[message_id] = self.signatures.get(message_id, "") + signature
        self._emit(Reasoning(delta, message_id, signature))

    def tool_start(self, call_id: str, name: str, message_id: str = "") -> StreamedCall:
        """Start a call (once: a start for a call still streaming is the same call).

        An id that a call which has already ended had is a new call: some servers and
        test models number their calls per message, so ids repeat over a run.
        """
        call = self.calls.get(call_id)
        if call is None or call.args is not None:
            if call is not None:  # keep the ended one, under a key no stream id can have
                self.calls[f"{call_id}\x00{len(self.calls)}"] = self.calls.pop(call_id)
            call = self.calls[call_id] = StreamedCall(call_id, name, message_id)
            self._emit(ToolCallStart(name, call_id, message_id))
        return call

    def tool_delta(self, call_id: str, delta: str) -> None:
        if not delta:
            return
        self.calls[call_id].arguments.append(delta)
        self._emit(ToolCallDelta(call_id, delta))

    def tool_end(self, call_id: str) -> StreamedCall:
        """End the call: ToolCallEnd, then the whole ToolCall with its parsed arguments."""
        call = self.calls[call_id]
        if call.args is None:
            call.args, error = parse_arguments(call.text)
            self._emit(ToolCallEnd(call_id, error))
            self._emit(ToolCall(call.name, call.args, call_id))
        return call

    def interrupt(self, exc: BaseException) -> None:
        """The stream failed with *exc*: end the calls and messages it left open, saying so.

        Each open call gets its ``tool_call_end`` with the reason as its error, and no
        ``tool_call`` (it was never made whole). Never raises: the caller re-raises *exc*.
        """
        reason = (
            "it was cancelled"
            if isinstance(exc, asyncio.CancelledError)
            else f"{type(exc).__name__}: {exc}"
        )
        try:
            for call in list(self.calls.values()):
                if call.args is None:
                    call.args = {}
                    error = f"the stream ended before the arguments were whole ({reason})"
                    self._emit(ToolCallEnd(call.call_id, error))
            self.end_messages("error")
        except RunClosed:  # the run has ended: nothing left to tell
            pass

    def end_tools(self) -> None:
        """End every tool call still open (a stream that ends without saying so)."""
        for call_id, call in list(self.calls.items()):
            if call.args is None:
                self.tool_end(call_id)

    def tool_result(
        self,
        name: str,
        result: JSON,
        call_id: str = "",
        *,
        is_error: bool = False,
        denied: bool = False,
    ) -> None:
        self._emit(ToolResult(name, result, call_id, is_error, denied))

    def usage(self, usage: Usage) -> None:
        self.usages.append(usage)
        self._emit(usage)

    # -- what it adds up to -----------------------------------------------------

    def text_of(self, message_id: str | None = None) -> str:
        """The text of one message, or of all of them (in the order they began)."""
        if message_id is not None:
            return "".join(self.texts.get(message_id, ()))
        return "".join("".join(parts) for parts in self.texts.values())

    def reasoning_of(self, message_id: str | None = None) -> str:
        if message_id is not None:
            return "".join(self.reasonings.get(message_id, ()))
        return "".join("".join(parts) for parts in self.reasonings.values())
