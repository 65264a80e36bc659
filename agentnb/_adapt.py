"""Framework agents run directly: a pydantic-ai ``Agent``, an OpenAI Agents SDK ``Agent``,
a compiled LangGraph graph.

Each is recognised by the package its class comes from (no SDK is imported for
that) and wrapped by its adapter (``agentnb.adapters.<sdk>.as_agent``, imported
only then) into an agentnb agent: ``agent(input)`` streams the framework's run
into the current run. A string input is the user's prompt; any other value goes
to the framework as its own input.
"""

from __future__ import annotations

import functools
import importlib
import types
from collections.abc import Callable
from typing import Any

__all__: list[str] = []  # used by the core and the fronts, not public API

# (top-level package, an attribute its agents have) -> the adapter module
_FRAMEWORKS: tuple[tuple[str, str, str], ...] = (
    ("pydantic_ai", "run_stream_events", "agentnb.adapters.pydantic_ai"),
    ("agents", "handoffs", "agentnb.adapters.openai_agents"),
    ("langgraph", "astream", "agentnb.adapters.langgraph"),
)


_PLAIN = (str, types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)


def _adapter_module(obj: object) -> str | None:
    if isinstance(obj, _PLAIN):  # what almost every run is given: not looked at further
        return None
    packages = {cls.__module__.partition(".")[0] for cls in type(obj).__mro__}
    for package, attribute, module in _FRAMEWORKS:
        if package in packages and hasattr(obj, attribute):
            return module
    return None


def is_framework_agent(obj: object) -> bool:
    """Whether *obj* is an agent of a framework agentnb runs directly."""
    return _adapter_module(obj) is not None


def framework_agent(obj: object) -> Callable[..., Any] | None:
    """*obj* as an agentnb agent if it is a framework's agent, else None."""
    module = _adapter_module(obj)
    if module is None:
        return None
    adapted: Callable[..., Any] = importlib.import_module(module).as_agent(obj)
    return adapted
