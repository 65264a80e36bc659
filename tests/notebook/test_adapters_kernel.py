"""Framework agents and relayed SDK streams in a real kernel: ``%%agent`` runs them, Stop
closes the provider's HTTP response (the local provider sees the disconnect)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from harness.kernel import Kernel
from harness.providers import Provider, Reply, sse
from harness.web import serving
from tests.notebook.views import has_text, status_updates, wait_view

pytestmark = pytest.mark.kernel

SETUP = """
%load_ext agentnb
import agentnb, openai
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models.function import DeltaThinkingPart, DeltaToolCall, FunctionModel

async def scripted(messages, info):
    if not any(isinstance(m, ModelResponse) for m in messages):
        yield {0: DeltaThinkingPart(content="look it up", signature="s1")}
        yield {1: DeltaToolCall(name="order_status", json_args='{"order_id": ', tool_call_id="c1")}
        yield {1: DeltaToolCall(json_args='"1234"}')}
        return
    yield "Order 1234 "
    yield "has shipped."

support = Agent(FunctionModel(stream_function=scripted), name="support")

@support.tool_plain
def order_status(order_id: str) -> str:
    return f"{order_id}: shipped"
"""


def chat_chunk(content: str) -> bytes:
    return sse(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "gpt-test",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        }
    )


@pytest.fixture(scope="module")
def k() -> Iterator[Kernel]:
    kernel = Kernel({"AGENTNB_DEMO_SPEED": "0"})
    try:
        kernel.run_ok(SETUP, timeout=120)
        yield kernel
    finally:
        kernel.close()


def test_a_pydantic_ai_agent_runs_in_an_agent_cell_by_its_variable_name(k: Kernel) -> None:
    cell = k.run_ok("%%agent support\nWhere is my order 1234?", timeout=60)
    text = cell.final["text/plain"]
    assert "→ order_status(order_id=1234)" in text
    assert "← order_status: 1234: shipped" in text
    assert "Order 1234 has shipped." in text
    assert k.value("agentnb.list_agents() == []") == "True"  # found among the variables


def test_stop_in_the_cell_closes_the_relayed_openai_stream_at_the_provider(k: Kernel) -> None:
    provider = Provider()
    provider.script(Reply(chunks=[chat_chunk("The tide "), chat_chunk("turns ")], hang=True))
    with serving(provider.app) as base:
        k.run_ok(
            "client = openai.AsyncOpenAI(base_url="
            + json.dumps(base + "/v1")
            + ', api_key="test", max_retries=0)\n'
            "async def writer(topic):\n"
            '    stream = await client.chat.completions.create(model="gpt-test", '
            'messages=[{"role": "user", "content": topic}], stream=True)\n'
            "    return await agentnb.relay(stream)\n"
        )
        cell_id = k.submit("%%agent writer\nthe tides")
        comm = wait_view(k, cell_id)
        k.wait_for(lambda: has_text(k, comm), 20, "the relayed text")
        assert provider.disconnects == []
        assert k.idle(cell_id) is False, "the run ended before Stop could be tested"
        stopped = time.monotonic()
        k.comm_send(comm, {"t": "stop"})
        cell = k.wait(cell_id)
        provider.wait_left(5)
    assert cell.ok, cell.summary()
    assert status_updates(k, comm) == ["cancelled"]
    assert cell.final["text/plain"].startswith("The tide turns")
    assert len(provider.disconnects) == 1
    assert provider.disconnects[0] - stopped < 1.0  # the provider saw the client leave
