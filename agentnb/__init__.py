"""agentnb: watch AI agents work.

Agent code calls ``agentnb.emit(...)`` from anywhere inside a run; the run's
sinks (a notebook cell, a terminal, an async iterator, a web page) receive the
events live, in order, each exactly once.
"""

from __future__ import annotations

from ._ask import approve, ask
from ._console import ConsoleSink
from ._events import (
    JSON,
    Answer,
    Ask,
    Cancelled,
    Custom,
    Done,
    Error,
    Event,
    MessageEnd,
    MessageStart,
    Raw,
    Reasoning,
    Stamps,
    StateDelta,
    StateSnapshot,
    Status,
    StepEnd,
    StepStart,
    TextChunk,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
)
from ._exceptions import (
    AgentnbError,
    InvalidAnswer,
    InvalidEvent,
    InvalidSink,
    LoopAlreadyRunning,
    NoActiveRun,
    NoAnswer,
    RunCancelled,
    RunClosed,
    SinkStuck,
    UnknownAgent,
    UnknownStream,
)
from ._record import JsonlRecorder, read_events, replay
from ._registry import AgentInfo, agent, get_agent, list_agents
from ._relay import relay
from ._run import Run, aemit, current_run, emit, run, start
from ._schema import event_schema
from ._sinks import Sink, SinkLike
from ._stream import RunStream, stream
from ._sync import run_sync
from ._version import __version__

__all__ = [
    "JSON",
    "AgentInfo",
    "AgentnbError",
    "Answer",
    "Ask",
    "Cancelled",
    "ConsoleSink",
    "Custom",
    "Done",
    "Error",
    "Event",
    "InvalidAnswer",
    "InvalidEvent",
    "InvalidSink",
    "JsonlRecorder",
    "LoopAlreadyRunning",
    "MessageEnd",
    "MessageStart",
    "NoActiveRun",
    "NoAnswer",
    "Raw",
    "Reasoning",
    "Run",
    "RunCancelled",
    "RunClosed",
    "RunStream",
    "Sink",
    "SinkLike",
    "SinkStuck",
    "Stamps",
    "StateDelta",
    "StateSnapshot",
    "Status",
    "StepEnd",
    "StepStart",
    "TextChunk",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolResult",
    "UnknownAgent",
    "UnknownStream",
    "Usage",
    "__version__",
    "aemit",
    "agent",
    "approve",
    "ask",
    "current_run",
    "emit",
    "event_schema",
    "get_agent",
    "list_agents",
    "load_ipython_extension",
    "read_events",
    "relay",
    "replay",
    "run",
    "run_sync",
    "start",
    "stream",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> object:
    # `agentnb.notebook`, `agentnb.client`, `agentnb.server`, `agentnb.redis` after a bare
    # `import agentnb`, imported only when asked for (each needs its extra).
    if name in ("notebook", "client", "server", "redis"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'agentnb' has no attribute {name!r}")


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext agentnb``: registers the notebook front's magics (imported only then)."""
    from .notebook import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext agentnb``: removes what ``%load_ext agentnb`` installed."""
    from .notebook import unload_ipython_extension as unload

    unload(ipython)
