"""OpenAI-compatible chat-completion chunks, read into an Assembler.

The vocabulary many SDKs stream (OpenAI's chat completions, LiteLLM, OpenAI-compatible
servers). :class:`ChatChunks` is duck-typed over the chunks: ``.id``, ``.model``,
``.choices[i].delta.{role, content, refusal, tool_calls[j].{index, id, function.{name,
arguments}}}``, reasoning as ``delta.reasoning_content`` or ``delta.reasoning`` (a field
some providers add), ``.choices[i].finish_reason`` and ``.usage`` (the last chunk, with
``stream_options={"include_usage": True}``). It imports no SDK.

A chunk's ``id`` is the message id of its first choice (``"<id>/<index>"`` for the
others). A tool call starts with its first delta and ends when its choice finishes (or
at :meth:`ChatChunks.finish`). Usage is emitted once, at ``finish``, from the last
chunk that carried it (some servers repeat a running total on every chunk).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentnb._assemble import Assembler, StreamedCall
from agentnb._events_stream import Usage

__all__ = ["ChatChunks"]


@dataclass(slots=True)
class _Choice:
    """What one choice of the stream has added up to so far."""

    message_id: str
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    calls: dict[int, StreamedCall] = field(default_factory=dict)  # by the delta's index
    finish_reason: str | None = None
    ended: bool = False


class ChatChunks:
    """Chat-completion chunks in, agentnb events out; after :meth:`finish`, the whole message.

    ``content``, ``reasoning``, ``refusal``, ``tool_calls`` and ``finish_reason`` are
    those of the first choice (index 0); ``id`` and ``model`` those of the stream.
    """

    def __init__(self, assembler: Assembler, provider: str) -> None:
        self.assembler = assembler
        self.provider = provider
        self.id: str | None = None
        self.model: str | None = None
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None
        self._finished = False

    # -- reading ----------------------------------------------------------------

    def feed(self, chunk: Any) -> None:
        """Read one chunk: emit its text, reasoning and tool-call parts as they come."""
        if self.id is None:
            self.id = getattr(chunk, "id", None) or ""
        model = getattr(chunk, "model", None)
        if model:
            self.model = model
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._usage = usage
        for choice in getattr(chunk, "choices", None) or ():
            self._feed_choice(chunk, choice)

    def _feed_choice(self, chunk: Any, choice: Any) -> None:
        assembler = self.assembler
        index = getattr(choice, "index", 0) or 0
        state = self._choices.get(index)
        delta = choice.delta
        if state is None:
            chunk_id = getattr(chunk, "id", None) or self.id or ""
            state = self._choices[index] = _Choice(chunk_id if not index else f"{chunk_id}/{index}")
            role = getattr(delta, "role", None) if delta is not None else None
            assembler.message_start(state.message_id, role if role in _ROLES else "assistant")
        message_id = state.message_id
        if delta is not None:
            reader = _reasoning_readers.get(type(delta))
            if reader is None:
                reader = _reasoning_readers[type(delta)] = _reasoning_reader(type(delta))
            reasoning = reader(delta)
            if reasoning and isinstance(reasoning, str):
                state.reasoning.append(reasoning)
                assembler.reasoning(reasoning, message_id)
            content = delta.content
            if content:
                state.content.append(content)
                assembler.text(content, message_id)
            refusal = getattr(delta, "refusal", None)
            if refusal:  # the model's refusal is shown as its text
                state.refusal.append(refusal)
                assembler.text(refusal, message_id)
            tool_calls = getattr(delta, "tool_calls", None)
            if tool_calls:
                self._feed_tools(state, tool_calls)
        finish_reason = getattr(choice, "finish_reason", None)
        if finish_reason:
            state.finish_reason = finish_reason
            self._end_choice(state)

    def _feed_tools(self, state: _Choice, tool_calls: Any) -> None:
        assembler = self.assembler
        for position, part in enumerate(tool_calls):
            index = getattr(part, "index", None)
            if index is None:
                index = position
            function = getattr(part, "function", None)
            call = state.calls.get(index)
            if call is None:
                call_id = getattr(part, "id", None) or f"{state.message_id}:{index}"
                name = (getattr(function, "name", None) if function is not None else None) or ""
                call = assembler.tool_start(call_id, name, state.message_id)
                state.calls[index] = call
            if function is not None:
                arguments = getattr(function, "arguments", None)
                if arguments:
                    assembler.tool_delta(call.call_id, arguments)

    def _end_choice(self, state: _Choice) -> None:
        if state.ended:
            return
        state.ended = True
        for call in state.calls.values():
            self.assembler.tool_end(call.call_id)
        self.assembler.message_end(state.message_id, state.finish_reason or "")

    def finish(self) -> None:
        """End the tool calls and messages still open; emit the usage, if any was reported."""
        if self._finished:
            return
        self._finished = True
        for state in self._choices.values():
            self._end_choice(state)
        if self._usage is not None:
            self.assembler.usage(self.usage_event(self._usage, self.model or ""))

    def usage_event(self, usage: Any, model: str) -> Usage:
        """The Usage event for the stream's usage object (a subclass may add its cost)."""
        completion = getattr(usage, "completion_tokens_details", None)
        prompt = getattr(usage, "prompt_tokens_details", None)
        return Usage(
            input_tokens=getattr(usage, "prompt_tokens", None) or 0,
            output_tokens=getattr(usage, "completion_tokens", None) or 0,
            model=model,
            provider=self.provider,
            reasoning_tokens=_count(completion, "reasoning_tokens"),
            cached_tokens=_count(prompt, "cached_tokens"),
        )

    # -- what it added up to ----------------------------------------------------

    def _first(self) -> _Choice | None:
        return self._choices.get(0) or next(iter(self._choices.values()), None)

    @property
    def content(self) -> str | None:
        first = self._first()
        return "".join(first.content) if first is not None and first.content else None

    @property
    def reasoning(self) -> str | None:
        first = self._first()
        return "".join(first.reasoning) if first is not None and first.reasoning else None

    @property
    def refusal(self) -> str | None:
        first = self._first()
        return "".join(first.refusal) if first is not None and first.refusal else None

    @property
    def tool_calls(self) -> list[StreamedCall]:
        first = self._first()
        return [] if first is None else [first.calls[i] for i in sorted(first.calls)]

    @property
    def finish_reason(self) -> str | None:
        first = self._first()
        return None if first is None else first.finish_reason


_ROLES = frozenset({"assistant", "user", "system", "developer", "tool"})
_REASONING = ("reasoning_content", "reasoning")


def _getattrs(delta: Any) -> Any:
    return getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)


def _extras(delta: Any) -> Any:
    extra = delta.model_extra
    return extra and (extra.get("reasoning_content") or extra.get("reasoning"))


def _reasoning_reader(cls: type) -> Callable[[Any], Any]:
    """How to read a delta's reasoning: from a pydantic model's extra fields when its class
    declares neither field (a missed attribute costs microseconds per chunk), else getattr."""
    fields = getattr(cls, "model_fields", None)
    if (
        isinstance(fields, dict)
        and isinstance(getattr(cls, "model_extra", None), property)
        and not any(name in fields for name in _REASONING)
    ):
        return _extras
    return _getattrs


_reasoning_readers: dict[type, Callable[[Any], Any]] = {}


def _count(details: Any, name: str) -> int | None:
    value = getattr(details, name, None) if details is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
