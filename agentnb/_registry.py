"""The agent registry: ``@agentnb.agent`` and name look-ups (for ``%agent`` and the server)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, overload

from ._adapt import framework_agent
from ._exceptions import UnknownAgent

__all__ = ["AgentInfo", "agent", "get_agent", "list_agents"]

F = TypeVar("F", bound=Callable[..., Any])

AgentLike: TypeAlias = Callable[..., Any] | str | object
"""What a run takes: an agent function, a registered agent's name, or a framework's agent
(a pydantic-ai Agent, an OpenAI Agents SDK Agent, a compiled LangGraph graph)."""

_registry: dict[str, AgentInfo] = {}
_NAME_ATTR = "__agentnb_name__"


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """A registered agent: its name, the callable, and a one-line description."""

    name: str
    fn: Callable[..., Any]
    description: str


@overload
def agent(fn: F, /) -> F: ...
@overload
def agent(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...
def agent(
    fn: F | None = None, /, *, name: str | None = None, description: str | None = None
) -> F | Callable[[F], F]:
    """Register an agent under its name (or *name*) and return it unchanged.

    ``@agentnb.agent`` or ``@agentnb.agent(name="poet", description="...")``. The
    description defaults to the first line of the docstring. Registering a name
    again replaces the earlier agent (re-running a notebook cell does that).
    """

    def register(f: F) -> F:
        adapted = framework_agent(f)
        if adapted is not None:  # agentnb.agent(pydantic_agent, name="support")
            key = name or agent_name(adapted)
            _registry[key] = AgentInfo(key, adapted, description or describe(adapted))
            return f
        if not callable(f):
            raise TypeError(f"@agentnb.agent decorates a function, got {f!r}")
        key = name or getattr(f, "__name__", None) or type(f).__name__
        _registry[key] = AgentInfo(key, f, description if description is not None else describe(f))
        # A bound method cannot take the attribute; the registry still has it.
        with contextlib.suppress(AttributeError, TypeError):
            setattr(f, _NAME_ATTR, key)
        return f

    return register(fn) if fn is not None else register


def describe(fn: Callable[..., Any]) -> str:
    """An agent's one-line description: the first line of its docstring ("" without one)."""
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def get_agent(name: str) -> Callable[..., Any]:
    """The agent registered as *name*; raises ``UnknownAgent`` listing the known ones."""
    try:
        return _registry[name].fn
    except KeyError:
        raise UnknownAgent(name, list(_registry)) from None


def list_agents() -> list[AgentInfo]:
    """All registered agents, sorted by name."""
    return [_registry[k] for k in sorted(_registry)]


def agent_name(fn: Callable[..., Any]) -> str:
    """The name a run of *fn* goes by: its registered name, else its ``__name__``."""
    adapted = framework_agent(fn)
    if adapted is not None:
        fn = adapted
    registered = getattr(fn, _NAME_ATTR, None)
    if isinstance(registered, str):
        return registered
    return getattr(fn, "__name__", None) or type(fn).__name__


def resolve_agent(agent: AgentLike) -> Callable[..., Any]:
    """Accept an agent or a registered agent's name."""
    if isinstance(agent, str):
        return get_agent(agent)
    adapted = framework_agent(agent)
    if adapted is not None:
        return adapted
    if inspect.iscoroutine(agent):
        agent.close()  # never awaited: close it so Python does not warn as well
        raise TypeError(
            "got a coroutine: pass the agent and its arguments separately, "
            "e.g. agentnb.run(poet, 'the sea'), not agentnb.run(poet('the sea'))."
        )
    if not callable(agent):
        raise TypeError(
            f"an agent is an async function, a function or a generator, or a pydantic-ai "
            f"Agent, an OpenAI Agents SDK Agent or a compiled LangGraph graph; got {agent!r}. "
            "Pass the agent itself (without calling it) or its registered name."
        )
    return agent
