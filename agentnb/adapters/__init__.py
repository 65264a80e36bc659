"""Adapters: one module per agent or model SDK, each turning that SDK's stream into agentnb events.

Users do not import these: ``agentnb.relay(stream)`` and running a framework's
agent (``agentnb.run(pydantic_agent, "...")``, ``%%agent graph``, the server's
agents) find the right one by the package the object comes from. Each module
imports only agentnb's core and its own SDK (never another adapter); the shared
wire vocabularies that several SDKs speak live in ``_chat`` (OpenAI-compatible
chat-completion chunks) and ``_responses`` (OpenAI Responses API events).
"""
