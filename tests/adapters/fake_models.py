"""LangChain's own fake chat model, taught to stream what real models stream.

``GenericFakeChatModel`` only splits text (and its ``bind_tools`` raises), so a
subclass streams scripted ``AIMessageChunk``s as they are: text, reasoning blocks,
tool-call chunks split anywhere, usage on the last chunk. Everything else (callbacks,
``stream``/``astream``/``invoke``, LangGraph's message streaming, the final empty chunk
LangChain adds) is LangChain's own code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import add_ai_message_chunks
from langchain_core.messages.tool import ToolCallChunk, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


class ScriptedChatModel(GenericFakeChatModel):
    """Streams, on each call, the next scripted turn: a list of ``AIMessageChunk``s.

    An exception in a turn is raised when the stream reaches it, as a provider's
    error mid-stream is. ``streamed`` counts the chunks handed out so far.
    """

    turns: Iterator[Sequence[AIMessageChunk | BaseException]]
    streamed: int = 0
    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))
    delay: float = 0.0  # seconds between chunks (in the model's thread)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in next(self.turns):
            if self.delay:
                time.sleep(self.delay)
            if isinstance(chunk, BaseException):
                raise chunk
            self.streamed += 1
            generation = ChatGenerationChunk(message=chunk.model_copy(deep=True))
            if run_manager is not None:
                run_manager.on_llm_new_token(generation.text, chunk=generation)
            yield generation

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks: list[AIMessageChunk] = []
        for chunk in next(self.turns):
            if isinstance(chunk, BaseException):
                raise chunk
            chunks.append(chunk.model_copy(deep=True))
        whole = add_ai_message_chunks(chunks[0], *chunks[1:])
        message = AIMessage(
            **whole.model_dump(exclude={"type", "tool_call_chunks", "chunk_position"})
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def scripted(
    *turns: Sequence[AIMessageChunk | BaseException], delay: float = 0.0
) -> ScriptedChatModel:
    """A model that streams *turns*, one per call."""
    return ScriptedChatModel(turns=iter(turns), delay=delay)


def tool_chunk(
    args: str, *, index: int = 0, name: str | None = None, call_id: str | None = None
) -> ToolCallChunk:
    """One ``tool_call_chunks`` entry, as providers split them."""
    return tool_call_chunk(name=name, args=args, id=call_id, index=index)
