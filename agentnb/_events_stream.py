"""The events for what model and agent SDKs stream, beyond text and whole tool calls.

They carry losslessly what the OpenAI and Anthropic SDKs, LiteLLM, LangChain,
pydantic-ai, the OpenAI Agents SDK and LangGraph stream (and what AG-UI and the AI
SDK's UI message stream speak): reasoning, tool calls as their arguments arrive,
token usage, steps, state, message boundaries, and the native events nothing else
fits. ``agentnb.relay`` and the framework adapters emit them; an agent may too.

A streamed tool call is ``ToolCallStart``, any number of ``ToolCallDelta``
(argument fragments: concatenated, the arguments' JSON text), ``ToolCallEnd``, and
then the complete ``ToolCall`` with the parsed arguments, so a consumer that knows
only ``tool_call`` loses nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ._events import JSON, Event, _field, _short_repr, _str, to_json_value
from ._exceptions import InvalidEvent

if TYPE_CHECKING:
    from typing import Unpack

    from ._events import Stamps, _Field

__all__ = [
    "Answer",
    "Ask",
    "MessageEnd",
    "MessageStart",
    "Raw",
    "Reasoning",
    "StateDelta",
    "StateSnapshot",
    "StepEnd",
    "StepStart",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "Usage",
]

_PATCH_OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})
_ROLES = frozenset({"assistant", "user", "system", "developer", "tool"})


def _opt_str(value: object, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _count(value: object, where: str) -> int:
    if type(value) is not int or value < 0:
        raise InvalidEvent(
            f"{where} must be a whole number of tokens (an int >= 0), got {_short_repr(value)}."
        )
    return value


def _opt_count(value: object, where: str) -> int | None:
    return None if value is None else _count(value, f"{where} (or None)")


class Reasoning(Event):
    """A piece of the model's reasoning (its "thinking"), shown folded.

    ``signature`` carries, opaque and unchanged, what the provider needs back to
    continue the conversation: Anthropic's thinking signature or a redacted block's
    data, OpenAI's encrypted reasoning content.
    """

    __slots__ = ("_message_id", "_signature", "_text")
    __match_args__ = ("text", "message_id", "signature")
    kind = "reasoning"
    _fields = ("text", "message_id", "signature")
    _optional = frozenset({"message_id", "signature"})
    text: _Field[str] = _field("text")
    message_id: _Field[str] = _field("message_id", "The reasoning block's id ('' if none).")
    signature: _Field[str | None] = _field("signature", "An opaque value the provider gave.")

    def __init__(
        self,
        text: str = "",
        message_id: str = "",
        signature: str | None = None,
        **stamps: Unpack[Stamps],
    ) -> None:
        self._text = _str(text, "Reasoning.text")
        self._message_id = _str(message_id, "Reasoning.message_id")
        self._signature = _opt_str(signature, "Reasoning.signature")
        self._set_stamps(**stamps)


class ToolCallStart(Event):
    """A tool call begins: its id and the tool's name; its arguments stream next."""

    __slots__ = ("_call_id", "_message_id", "_name")
    __match_args__ = ("name", "call_id", "message_id")
    kind = "tool_call_start"
    _fields = ("name", "call_id", "message_id")
    _optional = frozenset({"message_id"})
    name: _Field[str] = _field("name")
    call_id: _Field[str] = _field("call_id")
    message_id: _Field[str] = _field("message_id", "The message that makes the call ('' if none).")

    def __init__(
        self, name: str, call_id: str, message_id: str = "", **stamps: Unpack[Stamps]
    ) -> None:
        self._name = _str(name, "ToolCallStart.name")
        self._call_id = _str(call_id, "ToolCallStart.call_id")
        self._message_id = _str(message_id, "ToolCallStart.message_id")
        self._set_stamps(**stamps)


class ToolCallDelta(Event):
    """A fragment of a streamed tool call's arguments (JSON text, not yet whole)."""

    __slots__ = ("_call_id", "_delta")
    __match_args__ = ("call_id", "delta")
    kind = "tool_call_delta"
    _fields = ("call_id", "delta")
    call_id: _Field[str] = _field("call_id")
    delta: _Field[str] = _field("delta")

    def __init__(self, call_id: str, delta: str, **stamps: Unpack[Stamps]) -> None:
        self._call_id = _str(call_id, "ToolCallDelta.call_id")
        self._delta = _str(delta, "ToolCallDelta.delta")
        self._set_stamps(**stamps)


class ToolCallEnd(Event):
    """A streamed tool call's arguments are whole; the complete ``ToolCall`` follows.

    ``error`` says why the arguments could not be read as a JSON object, if they
    could not (the ToolCall then carries their text as ``{"_raw": text}``).
    """

    __slots__ = ("_call_id", "_error")
    __match_args__ = ("call_id", "error")
    kind = "tool_call_end"
    _fields = ("call_id", "error")
    _optional = frozenset({"error"})
    call_id: _Field[str] = _field("call_id")
    error: _Field[str] = _field(
        "error", "Why the arguments are not a JSON object ('' if they are)."
    )

    def __init__(self, call_id: str, error: str = "", **stamps: Unpack[Stamps]) -> None:
        self._call_id = _str(call_id, "ToolCallEnd.call_id")
        self._error = _str(error, "ToolCallEnd.error")
        self._set_stamps(**stamps)


class Usage(Event):
    """The tokens one model call used (and what it cost, when known).

    Every run's terminal event carries the sum of its Usage events (its sub-runs'
    included) as ``usage``.
    """

    __slots__ = (
        "_cached_tokens",
        "_cost",
        "_input_tokens",
        "_model",
        "_output_tokens",
        "_provider",
        "_reasoning_tokens",
    )
    __match_args__ = ("input_tokens", "output_tokens", "model", "provider")
    kind = "usage"
    _fields = (
        "model",
        "provider",
        "input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cached_tokens",
        "cost",
    )
    _optional = frozenset({"model", "provider", "reasoning_tokens", "cached_tokens", "cost"})
    model: _Field[str] = _field("model", "The model that answered ('' if unknown).")
    provider: _Field[str] = _field(
        "provider", "Who served it: openai, anthropic, ... ('' if unknown)."
    )
    input_tokens: _Field[int] = _field("input_tokens", "Tokens in (prompt), cached ones included.")
    output_tokens: _Field[int] = _field("output_tokens", "Tokens out, reasoning included.")
    reasoning_tokens: _Field[int | None] = _field(
        "reasoning_tokens", "Of the output tokens, those spent reasoning (None if unknown)."
    )
    cached_tokens: _Field[int | None] = _field(
        "cached_tokens",
        "Of the input tokens, those read from the provider's cache (None if unknown).",
    )
    cost: _Field[float | None] = _field(
        "cost", "What the call cost in US dollars (None if unknown)."
    )

    def __init__(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        model: str = "",
        provider: str = "",
        reasoning_tokens: int | None = None,
        cached_tokens: int | None = None,
        cost: float | None = None,
        **stamps: Unpack[Stamps],
    ) -> None:
        self._input_tokens = _count(input_tokens, "Usage.input_tokens")
        self._output_tokens = _count(output_tokens, "Usage.output_tokens")
        self._model = _str(model, "Usage.model")
        self._provider = _str(provider, "Usage.provider")
        self._reasoning_tokens = _opt_count(reasoning_tokens, "Usage.reasoning_tokens")
        self._cached_tokens = _opt_count(cached_tokens, "Usage.cached_tokens")
        if cost is not None:
            if type(cost) is int:
                cost = float(cost)
            if type(cost) is not float or not math.isfinite(cost) or cost < 0:
                raise InvalidEvent(
                    f"Usage.cost must be a finite number of dollars >= 0 or None, got {cost!r}."
                )
        self._cost = cost
        self._set_stamps(**stamps)


class StepStart(Event):
    """A step begins: one model call, a graph node, an agent's turn."""

    __slots__ = ("_name", "_step_id")
    __match_args__ = ("name", "step_id")
    kind = "step_start"
    _fields = ("name", "step_id")
    _optional = frozenset({"step_id"})
    name: _Field[str] = _field("name")
    step_id: _Field[str] = _field(
        "step_id", "Ties the start to its end ('' if steps do not overlap)."
    )

    def __init__(self, name: str, step_id: str = "", **stamps: Unpack[Stamps]) -> None:
        self._name = _str(name, "StepStart.name")
        self._step_id = _str(step_id, "StepStart.step_id")
        self._set_stamps(**stamps)


class StepEnd(Event):
    """The step of that name (and id) has ended."""

    __slots__ = ("_name", "_step_id")
    __match_args__ = ("name", "step_id")
    kind = "step_end"
    _fields = ("name", "step_id")
    _optional = frozenset({"step_id"})
    name: _Field[str] = _field("name")
    step_id: _Field[str] = _field("step_id")

    def __init__(self, name: str, step_id: str = "", **stamps: Unpack[Stamps]) -> None:
        self._name = _str(name, "StepEnd.name")
        self._step_id = _str(step_id, "StepEnd.step_id")
        self._set_stamps(**stamps)


class StateSnapshot(Event):
    """The agent's whole shared state (a graph's values, say), as JSON."""

    __slots__ = ("_state",)
    __match_args__ = ("state",)
    kind = "state_snapshot"
    _fields = ("state",)
    state: _Field[JSON] = _field("state")

    def __init__(self, state: JSON, **stamps: Unpack[Stamps]) -> None:
        self._state = to_json_value(state, "StateSnapshot.state")
        self._set_stamps(**stamps)


class StateDelta(Event):
    """A change to the shared state as a JSON Patch (RFC 6902): a list of operations."""

    __slots__ = ("_patch",)
    __match_args__ = ("patch",)
    kind = "state_delta"
    _fields = ("patch",)
    patch: _Field[list[dict[str, JSON]]] = _field("patch")

    def __init__(self, patch: Sequence[Mapping[str, JSON]], **stamps: Unpack[Stamps]) -> None:
        if isinstance(patch, str | bytes) or not isinstance(patch, Sequence):
            raise InvalidEvent(
                "StateDelta.patch must be a list of JSON Patch operations such as "
                f"{{'op': 'replace', 'path': '/count', 'value': 2}}, got {_short_repr(patch)}."
            )
        copied = to_json_value(list(patch), "StateDelta.patch")
        assert isinstance(copied, list)
        for i, op in enumerate(copied):
            if (
                not isinstance(op, dict)
                or op.get("op") not in _PATCH_OPS
                or not isinstance(op.get("path"), str)
            ):
                raise InvalidEvent(
                    f"StateDelta.patch[{i}] is not a JSON Patch operation ({_short_repr(op)}): "
                    "each is a dict with 'op' (add, remove, replace, move, copy or test) and "
                    "'path' (a JSON Pointer such as '/count')."
                )
        self._patch = [op for op in copied if isinstance(op, dict)]  # all are: checked above
        self._set_stamps(**stamps)


class MessageStart(Event):
    """A model message begins; its text and reasoning carry its ``message_id``."""

    __slots__ = ("_message_id", "_role")
    __match_args__ = ("message_id", "role")
    kind = "message_start"
    _fields = ("message_id", "role")
    message_id: _Field[str] = _field("message_id")
    role: _Field[str] = _field("role", "assistant, user, system, developer or tool.")

    def __init__(self, message_id: str, role: str = "assistant", **stamps: Unpack[Stamps]) -> None:
        self._message_id = _str(message_id, "MessageStart.message_id")
        role = _str(role, "MessageStart.role")
        if role not in _ROLES:
            raise InvalidEvent(
                f"MessageStart.role must be one of {', '.join(sorted(_ROLES))}, got {role!r}."
            )
        self._role = role
        self._set_stamps(**stamps)


class MessageEnd(Event):
    """The model message has ended; ``finish_reason`` as the provider said (stop, length,
    tool_calls, ...; '' if it did not)."""

    __slots__ = ("_finish_reason", "_message_id")
    __match_args__ = ("message_id", "finish_reason")
    kind = "message_end"
    _fields = ("message_id", "finish_reason")
    _optional = frozenset({"finish_reason"})
    message_id: _Field[str] = _field("message_id")
    finish_reason: _Field[str] = _field("finish_reason")

    def __init__(self, message_id: str, finish_reason: str = "", **stamps: Unpack[Stamps]) -> None:
        self._message_id = _str(message_id, "MessageEnd.message_id")
        self._finish_reason = _str(finish_reason, "MessageEnd.finish_reason")
        self._set_stamps(**stamps)


class Raw(Event):
    """A native event no other kind fits, passed through as JSON.

    ``source`` names where it came from (``"openai.responses"``, ``"langgraph"``,
    ...); ``event`` is the native event's own JSON form.
    """

    __slots__ = ("_event", "_source")
    __match_args__ = ("source", "event")
    kind = "raw"
    _fields = ("source", "event")
    source: _Field[str] = _field("source")
    event: _Field[JSON] = _field("event")

    def __init__(self, source: str, event: JSON, **stamps: Unpack[Stamps]) -> None:
        self._source = _str(source, "Raw.source")
        self._event = to_json_value(event, "Raw.event")
        self._set_stamps(**stamps)


ANSWERED_BY = frozenset({"cell", "page", "socket", "http", "code", "default", "timeout"})
"""Who answered an Ask: a front end (cell, page, socket, http), code (``Run.answer``), or
nobody (the default taken where no one can answer, or once the wait timed out)."""


class Ask(Event):
    """The agent asks the person a question and waits for the answer.

    ``choices`` lists the answers allowed (None: free text); ``default`` is taken where
    no one can answer (a headless run) or when the wait times out; ``call_id`` names the
    tool call the question gates, if any (an approval).
    """

    __slots__ = ("_ask_id", "_call_id", "_choices", "_default", "_prompt")
    __match_args__ = ("prompt", "ask_id", "choices", "default", "call_id")
    kind = "ask"
    _fields = ("ask_id", "prompt", "choices", "default", "call_id")
    _optional = frozenset({"choices", "default", "call_id"})
    ask_id: _Field[str] = _field("ask_id", "Ties the question to its Answer.")
    prompt: _Field[str] = _field("prompt")
    choices: _Field[list[str] | None] = _field("choices", "The answers allowed; None: free text.")
    default: _Field[str | None] = _field("default", "Taken where no one answers.")
    call_id: _Field[str] = _field("call_id", "The tool call the question gates ('' if none).")

    def __init__(
        self,
        prompt: str,
        ask_id: str,
        choices: Sequence[str] | None = None,
        default: str | None = None,
        call_id: str = "",
        **stamps: Unpack[Stamps],
    ) -> None:
        self._prompt = _str(prompt, "Ask.prompt")
        self._ask_id = _str(ask_id, "Ask.ask_id")
        if choices is not None:
            if isinstance(choices, str) or not isinstance(choices, Sequence) or not choices:
                raise InvalidEvent(
                    "Ask.choices must be a non-empty list of str (the answers allowed), or "
                    f"None for free text, got {_short_repr(choices)}."
                )
            choices = [_str(c, f"Ask.choices[{i}]") for i, c in enumerate(choices)]
        self._choices: list[str] | None = choices
        self._default = _opt_str(default, "Ask.default")
        if choices is not None and default is not None and default not in choices:
            raise InvalidEvent(f"Ask.default {default!r} is not one of the choices {choices!r}.")
        self._call_id = _str(call_id, "Ask.call_id")
        self._set_stamps(**stamps)


class Answer(Event):
    """The answer to an Ask: its id, the value, and who answered (see ``ANSWERED_BY``)."""

    __slots__ = ("_ask_id", "_by", "_value")
    __match_args__ = ("ask_id", "value", "by")
    kind = "answer"
    _fields = ("ask_id", "value", "by")
    ask_id: _Field[str] = _field("ask_id")
    value: _Field[str] = _field("value")
    by: _Field[str] = _field("by", "cell, page, socket, http, code, default or timeout.")

    def __init__(self, ask_id: str, value: str, by: str, **stamps: Unpack[Stamps]) -> None:
        self._ask_id = _str(ask_id, "Answer.ask_id")
        self._value = _str(value, "Answer.value")
        by = _str(by, "Answer.by")
        if by not in ANSWERED_BY:
            raise InvalidEvent(
                f"Answer.by must be one of {', '.join(sorted(ANSWERED_BY))}, got {by!r}."
            )
        self._by = by
        self._set_stamps(**stamps)
