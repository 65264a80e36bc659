"""OpenAI Responses API stream events, read into an Assembler.

:class:`ResponsesEvents` reads the typed events of a Responses stream (objects with
``.type``), however the stream was obtained: ``client.responses.create(stream=True)``,
``client.responses.stream(...)``, or the OpenAI Agents SDK's ``raw_response_event.data``.

* ``response.output_item.added`` / ``.done``: a ``message`` item starts and ends a message
  (its id is the message id); a ``function_call`` item starts and ends a tool call (its
  ``call_id``); a ``reasoning`` item's ``encrypted_content`` is its signature.
* ``response.output_text.delta`` and ``response.refusal.delta`` are text;
  ``response.reasoning_summary_text.delta`` and ``response.reasoning_text.delta`` reasoning;
  ``response.function_call_arguments.delta`` / ``.done`` a tool call's arguments.
* ``response.completed`` / ``.incomplete`` / ``.failed`` give the usage and the final
  ``Response`` (``.response``); ``.failed`` and an ``error`` event raise ``openai.APIError``
  with the provider's message (its ``code`` and ``param`` from the error's body).
* Built-in tool progress (web and file search, code interpreter, image generation, MCP,
  shell), custom tool input, annotations and items of other types pass through as
  ``Raw("openai.responses", ...)``; lifecycle events nothing reads are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentnb._assemble import Assembler
from agentnb._events_stream import Raw, Usage

__all__ = ["ResponsesEvents"]

SOURCE = "openai.responses"

# Events carrying what no other kind carries: passed through as Raw (prefixes of .type).
_RAW_PREFIXES = (
    "response.web_search_call.",
    "response.file_search_call.",
    "response.code_interpreter_call",
    "response.image_generation_call.",
    "response.mcp_",
    "response.shell_call",
    "response.custom_tool_call_input.",
    "response.output_text.annotation.",
    "response.compaction.",
    "response.audio.transcript.",
)
_ROLES = frozenset({"assistant", "user", "system", "developer", "tool"})


class ResponsesEvents:
    """Responses stream events in, agentnb events out; ``.response`` once it has completed.

    *request* (the stream's ``httpx2.Request``, when known) goes into the ``openai.APIError``
    raised for an ``error`` event or a failed response.
    """

    def __init__(self, assembler: Assembler, provider: str = "openai", request: Any = None) -> None:
        self.assembler = assembler
        self.provider = provider
        self.request = request
        self.response: Any = None
        self._calls: dict[str, str] = {}  # a function_call item's id -> its call_id
        self._handlers: dict[str, Callable[[Any], None]] = {
            "response.output_text.delta": self._text,
            "response.refusal.delta": self._text,
            "response.reasoning_summary_text.delta": self._reasoning,
            "response.reasoning_text.delta": self._reasoning,
            "response.function_call_arguments.delta": self._arguments,
            "response.function_call_arguments.done": self._arguments_done,
            "response.output_item.added": self._item_added,
            "response.output_item.done": self._item_done,
            "response.completed": self._completed,
            "response.incomplete": self._completed,
            "response.failed": self._failed,
            "error": self._error,
        }

    def feed(self, event: Any) -> None:
        """Read one event; raises ``openai.APIError`` for ``error`` and ``response.failed``."""
        kind = event.type
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(event)
        elif kind.startswith(_RAW_PREFIXES):
            self._raw(event)

    def finish(self) -> None:
        """End the tool calls and messages still open (a stream cut short)."""
        self.assembler.end_tools()
        self.assembler.end_messages()

    # -- the parts ----------------------------------------------------------------

    def _text(self, event: Any) -> None:
        self.assembler.message_start(event.item_id)
        self.assembler.text(event.delta, event.item_id)

    def _reasoning(self, event: Any) -> None:
        self.assembler.reasoning(event.delta, event.item_id)

    def _call_id(self, item_id: str) -> str:
        call_id = self._calls.get(item_id)
        if call_id is None:  # no output_item.added came first: the item id stands in
            call_id = self._calls[item_id] = item_id
            self.assembler.tool_start(item_id, "")
        return call_id

    def _arguments(self, event: Any) -> None:
        self.assembler.tool_delta(self._call_id(event.item_id), event.delta)

    def _arguments_done(self, event: Any) -> None:
        call_id = self._call_id(event.item_id)
        self._complete_arguments(call_id, event.arguments)
        self.assembler.tool_end(call_id)

    def _complete_arguments(self, call_id: str, arguments: str | None) -> None:
        """Emit what the final argument text has beyond the deltas (a server that sent none)."""
        call = self.assembler.calls[call_id]
        if call.args is not None or not arguments:
            return
        streamed = call.text
        if arguments != streamed and arguments.startswith(streamed):
            self.assembler.tool_delta(call_id, arguments[len(streamed) :])

    def _item_added(self, event: Any) -> None:
        item = event.item
        kind = item.type
        if kind == "message":
            role = getattr(item, "role", None)
            self.assembler.message_start(item.id, role if role in _ROLES else "assistant")
        elif kind == "function_call":
            call_id = item.call_id or item.id
            if item.id:
                self._calls[item.id] = call_id
            self.assembler.tool_start(call_id, item.name or "")
            if item.arguments:
                self.assembler.tool_delta(call_id, item.arguments)
        elif kind != "reasoning":
            self._raw(event)

    def _item_done(self, event: Any) -> None:
        item = event.item
        kind = item.type
        if kind == "message":
            self.assembler.message_end(item.id, getattr(item, "status", None) or "")
        elif kind == "function_call":
            call_id = self._calls.get(item.id) or item.call_id
            if call_id not in self.assembler.calls:
                self.assembler.tool_start(call_id, item.name or "")
            self._complete_arguments(call_id, item.arguments)
            self.assembler.tool_end(call_id)
        elif kind == "reasoning":
            signature = getattr(item, "encrypted_content", None)
            if signature:
                self.assembler.reasoning("", item.id or "", signature)
        else:
            self._raw(event)

    def _raw(self, event: Any) -> None:
        self.assembler.emit(Raw(SOURCE, event.model_dump(mode="json")))

    # -- the end ------------------------------------------------------------------

    def _completed(self, event: Any) -> None:
        response = self.response = event.response
        usage = getattr(response, "usage", None)
        if usage is not None:
            self.assembler.usage(self.usage_event(usage, getattr(response, "model", "") or ""))

    def _failed(self, event: Any) -> None:
        self._completed(event)
        error = getattr(event.response, "error", None)
        message = getattr(error, "message", None) or "the response failed"
        body = error.model_dump(mode="json") if error is not None else None
        raise self.error(message, body)

    def _error(self, event: Any) -> None:
        body = {"code": event.code, "message": event.message, "param": event.param}
        raise self.error(event.message or "the stream reported an error", body)

    def usage_event(self, usage: Any, model: str) -> Usage:
        """The Usage event for a response's usage object."""
        output = getattr(usage, "output_tokens_details", None)
        input_ = getattr(usage, "input_tokens_details", None)
        return Usage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            model=model,
            provider=self.provider,
            reasoning_tokens=_count(output, "reasoning_tokens"),
            cached_tokens=_count(input_, "cached_tokens"),
        )

    def error(self, message: str, body: object) -> BaseException:
        """The exception for an error the stream reported: ``openai.APIError``."""
        import httpx2
        import openai

        request = self.request if self.request is not None else httpx2.Request("POST", "/responses")
        return openai.APIError(message, request, body=body)


def _count(details: Any, name: str) -> int | None:
    value = getattr(details, name, None) if details is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
