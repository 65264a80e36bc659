"""Regressions from a review of the web front: restarts, hosts, slow clients, cancellation."""

from __future__ import annotations

import asyncio
import json

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse
from sse_starlette.sse import AppStatus
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import agentnb
from agentnb.client import stream
from agentnb.server import create_app, start_server
from agentnb.server._hosts import host_name
from harness.wait import eventually


async def burst(count: int) -> int:
    for i in range(count):  # no await: every event is emitted before anyone reads
        agentnb.emit(f"{i} ")
    return count


async def slow(count: int) -> int:
    for i in range(count):
        agentnb.emit(f"{i} ")
        await asyncio.sleep(0.02)
    return count


AGENTS = [burst, slow]


async def read_ids(base: str, body: dict[str, object]) -> list[str]:
    async with (
        httpx.AsyncClient(timeout=10) as http,
        aconnect_sse(http, "POST", base + "/api/stream", json=body) as source,
    ):
        return [sse.id async for sse in source.aiter_sse()]


async def test_an_app_served_again_after_a_stop_takes_runs() -> None:
    app = create_app(agents=AGENTS)
    for _ in range(2):
        with start_server(app) as server:
            ids = await read_ids(server.url, {"agent": "burst", "input": 3})
            assert len(ids) == 4


async def test_a_previous_servers_exit_flag_does_not_end_a_new_servers_streams() -> None:
    AppStatus.should_exit = True  # what a Ctrl-C on an earlier serve() in this process leaves
    try:
        with start_server(create_app(agents=AGENTS)) as server:
            ids = await read_ids(server.url, {"agent": "slow", "input": 5})
        assert len(ids) == 6
    finally:
        AppStatus.should_exit = False


async def test_a_connected_client_slower_than_the_buffer_loses_nothing() -> None:
    # 200 events in one burst, a buffer of 64: the listener reads only after the burst,
    # but frames it has not read stay (up to four buffers' worth... and 200 < 64 * 4).
    with start_server(create_app(agents=AGENTS, replay_size=64)) as server:
        ids = await read_ids(server.url, {"agent": "burst", "input": 200})
    assert len(ids) == 201


async def test_a_websocket_cut_off_behind_the_buffer_is_told_so() -> None:
    with start_server(create_app(agents=AGENTS, replay_size=5)) as server:
        url = server.url.replace("http", "ws") + "/api/ws"
        async with connect(url) as socket:
            await socket.send(json.dumps({"type": "start", "agent": "burst", "input": 100}))
            messages = []
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), 5))
                messages.append(message)
                if message["type"] == "error":
                    break
    assert messages[0]["type"] == "started"
    assert messages[-1]["error"] == "expired"
    assert "fell too far behind" in messages[-1]["message"]


async def test_a_request_naming_another_host_is_refused() -> None:
    with start_server(create_app(agents=AGENTS)) as server:
        async with httpx.AsyncClient() as http:
            evil = await http.post(
                server.url + "/api/stream",
                json={"agent": "burst", "input": 1},
                headers={"Host": "evil.example"},
            )
            fine = await http.get(server.url + "/api/agents", headers={"Host": "localhost:1"})
            empty = await http.get(server.url + "/api/agents", headers={"Host": ""})
        assert evil.status_code == 400
        assert evil.json()["error"] == "bad_host"
        assert evil.json()["message"].startswith(
            "this server answers to 127.0.0.1, ::1, localhost, not to Host 'evil.example'"
        )
        assert fine.status_code == 200
        assert empty.status_code == 400
        with pytest.raises(InvalidStatus):
            async with connect(
                server.url.replace("http", "ws") + "/api/ws",
                additional_headers={"Host": "evil.example"},
            ):
                pass
        assert server.call(lambda: server.app.state.hub.live) == []


async def test_any_host_when_allowed_hosts_is_a_star() -> None:
    with start_server(create_app(agents=AGENTS, allowed_hosts=["*"])) as server:
        async with httpx.AsyncClient() as http:
            answer = await http.get(server.url + "/api/agents", headers={"Host": "a.example"})
    assert answer.status_code == 200


def test_no_allowed_hosts_is_refused_at_once_not_served_open() -> None:
    with pytest.raises(TypeError, match=r"cannot be switched off.*\['\*'\]"):
        create_app(agents=AGENTS, allowed_hosts=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8000", "127.0.0.1"),
        ("LocalHost", "localhost"),
        ("[::1]:80", "::1"),
        ("::1", "::1"),
        ("", ""),
    ],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


async def test_a_cancel_scope_still_in_force_does_not_stop_the_clients_cancel_request() -> None:
    with start_server(create_app(agents=AGENTS)) as server:
        events = stream(server.url, "slow", 500)
        with anyio.move_on_after(0.3):
            async with events:
                async for _event in events:
                    pass
        assert events.run_id is not None
        run_id = events.run_id

        def status() -> str:
            return str(server.call(lambda: server.app.state.hub.get(run_id).status))

        await eventually(lambda: status() == "cancelled", 2, what="the cancel reaching the server")
