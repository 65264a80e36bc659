"""Randomised trials: clients dropping, resuming, cancelling and answering runs across two servers.

Two server processes (``tests/redis/shared_app.py``, each its own uvicorn) on one real
redis-server; real httpx clients. Each trial starts a ``scripted`` run (a random
number of paced events, sometimes a question, sometimes an error) on either server,
``on_disconnect`` "continue" or "cancel", reads a random number of events, drops the
connection, resumes on either server with ``Last-Event-ID`` (maybe several times),
maybe cancels on either (before, during or after the end), answers its question on
either when it comes, and reads to the end. Across all its connections a run's
events are ids 0..n-1 exactly once, in order, its texts are the script's (a prefix
when cancelled), its one terminal event is last, and every reply agrees with it.

Trials run ``CONCURRENCY`` at a time; each draws its plan from its own
``random.Random`` seeded by the trial's seed and index, so a failure is replayed by
``AGENTNB_TRIALS_SEED=<seed>`` (printed) and, alone, with ``AGENTNB_TRIAL=<index>``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from harness.redis import RedisServer, redis_server
from harness.web import ServerProcess
from harness.wire import SseEvent, SseParser
from tests.redis.shared_app import URL_VARIABLE

TRIALS = int(os.environ.get("AGENTNB_TRIALS", "10000"))
CONCURRENCY = 48  # trials in flight at once
TRIAL_TIMEOUT = 60.0  # seconds one trial may take, whatever it waits for
KEEPALIVE = 1.0  # seconds a client keeps an idle connection (uvicorn keeps one 5 s)
ENDS = ("done", "error", "cancelled")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


@pytest.fixture(scope="module")
def servers(redis: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two server processes on *redis*."""
    saved = os.environ.get(URL_VARIABLE)
    os.environ[URL_VARIABLE] = redis.url
    started: list[ServerProcess] = []
    try:
        started.append(ServerProcess(["-m", "tests.redis.shared_app"]))
        started.append(ServerProcess(["-m", "tests.redis.shared_app"]))
        yield started[0], started[1]
    finally:
        for server in started:
            server.close()
        if saved is None:
            os.environ.pop(URL_VARIABLE, None)
        else:
            os.environ[URL_VARIABLE] = saved


@dataclass
class Plan:
    """What one trial does (drawn from its own seeded random)."""

    index: int
    script: dict[str, Any]  # the scripted agent's input
    on_disconnect: str
    reads: list[tuple[int, int | None]]  # per connection: (server, events before the drop)
    # (server, when) of the cancel: when 0, before reading; k, once connection k has read
    # (still connected); len(reads), after the end
    cancel: tuple[int, int] | None
    answer: tuple[int, str]  # (server, value) to answer the question with, when it comes
    describe: int | None  # the server to describe the run on after its end

    @property
    def frames(self) -> int:
        """How many events the run sends when it is not cancelled."""
        events: int = self.script["events"]
        return events + (3 if self.script["ask"] is not None else 0) + 1


def plan(seed: int, index: int) -> Plan:
    rng = random.Random(f"{seed}:{index}")
    events = rng.randint(0, 24)
    script = {
        "events": events,
        "pause": rng.choice([0.0, 0.001, 0.002, 0.005]),
        "ask": rng.randrange(events) if events and rng.random() < 0.2 else None,
        "fail": rng.random() < 0.15,
    }
    trial = Plan(
        index=index,
        script=script,
        on_disconnect=rng.choice(["continue", "cancel"]),
        reads=[],
        cancel=None,
        answer=(rng.randrange(2), rng.choice(["yes", "no"])),
        describe=rng.randrange(2) if rng.random() < 0.25 else None,
    )
    drops = rng.choice([0, 1, 1, 1, 2, 2, 3])
    trial.reads = [(rng.randrange(2), rng.randint(0, trial.frames)) for _ in range(drops)]
    trial.reads.append((rng.randrange(2), None))  # the last connection reads to the end
    if rng.random() < 0.3:
        trial.cancel = (rng.randrange(2), rng.randint(0, len(trial.reads)))
    return trial


@dataclass
class Seen:
    """What one trial saw: every event of every connection, and the replies it got."""

    run_id: str = ""
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # id, type, data
    ended: bool = False  # the last connection's stream ended
    cancel: tuple[int, Any] | None = None  # (status, body)
    answer: tuple[int, Any] | None = None
    described: tuple[int, Any] | None = None


async def run_trial(
    trial: Plan, clients: tuple[httpx.AsyncClient, httpx.AsyncClient], seen: Seen
) -> None:
    """Carry out *trial*, noting in *seen* what it saw."""

    async def post(server: int, path: str, body: Any = None) -> tuple[int, Any]:
        response = await clients[server].post(path, json=body)
        return response.status_code, _json(response.content)

    async def cancel() -> None:
        assert trial.cancel is not None
        seen.cancel = await post(trial.cancel[0], f"/api/runs/{seen.run_id}/cancel")

    for k, (server, take) in enumerate(trial.reads):
        if k == 0:
            body = {
                "agent": "scripted",
                "input": trial.script,
                "on_disconnect": trial.on_disconnect,
            }
            request = clients[server].stream("POST", "/api/stream", json=body)
        else:
            headers = {"Last-Event-ID": seen.events[-1][0]} if seen.events else {}
            url = f"/api/runs/{seen.run_id}/events"
            request = clients[server].stream("GET", url, headers=headers)
        async with request as response:
            if response.status_code != 200:
                await response.aread()
                raise AssertionError(
                    f"connection {k} to server {server}: {response.status_code} {response.text}"
                )
            if k == 0:
                seen.run_id = response.headers["x-agentnb-run-id"]
                if trial.cancel is not None and trial.cancel[1] == 0:
                    await cancel()
            parser = SseParser()
            got = 0
            chunks = response.aiter_raw()
            while take is None or got < take:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    seen.ended = take is None
                    break
                for event in parser.feed(chunk):
                    data = _json(event.data.encode())
                    seen.events.append((event.id, event.event, data))
                    got += 1
                    if isinstance(data, dict) and data.get("kind") == "ask":
                        to, value = trial.answer
                        answer = {"ask_id": data.get("ask_id"), "value": value}
                        seen.answer = await post(to, f"/api/runs/{seen.run_id}/answer", answer)
            if trial.cancel is not None and 0 < trial.cancel[1] == k + 1 < len(trial.reads):
                await cancel()
        # leaving the block drops the connection (mid-stream, unless the run had ended)
    if trial.cancel is not None and trial.cancel[1] == len(trial.reads):
        await cancel()
    if trial.describe is not None:
        response = await clients[trial.describe].get(f"/api/runs/{seen.run_id}")
        seen.described = response.status_code, _json(response.content)


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")


def problems(trial: Plan, seen: Seen) -> list[str]:
    """What is wrong with what *trial* saw (nothing, for a correct server)."""
    run_id, events = seen.run_id, seen.events
    out: list[str] = []
    ids = [e[0] for e in events]
    if ids != [f"{run_id}:{n}" for n in range(len(events))]:
        out.append(f"ids are not {run_id}:0.. exactly once in order: {ids}")
    datas = [e[2] for e in events]
    if not all(isinstance(d, dict) for d in datas):
        return [*out, f"an event that is not a JSON object: {datas}"]
    kinds = [d.get("kind") for d in datas]
    if kinds != [e[1] for e in events]:
        out.append(f"the event: lines {[e[1] for e in events]} are not the kinds {kinds}")
    if [d.get("run_id") for d in datas] != [run_id] * len(datas):
        out.append("an event of another run")
    if [d.get("seq") for d in datas] != list(range(len(datas))):
        out.append(f"seq is not 0..: {[d.get('seq') for d in datas]}")
    ends = [i for i, kind in enumerate(kinds) if kind in ENDS]
    if not seen.ended:
        out.append("the last connection's stream did not end")
    if ends != [len(events) - 1]:
        return [*out, f"terminal events at {ends} of {len(events)}: {kinds}"]
    end = datas[-1]
    outcome = end["kind"]
    script = trial.script
    texts = [d.get("text") for d in datas if d.get("kind") == "text"]
    value = None
    if seen.answer is not None:
        status, body = seen.answer
        if status == 200:
            value = body.get("value") if isinstance(body, dict) else None
            taken = [d for d in datas if d.get("kind") == "answer"]
            # The agent emits the answer when it resumes: a cancel may come first.
            if [(d.get("value"), d.get("by")) for d in taken] != [(trial.answer[1], "http")] and (
                taken or outcome != "cancelled"
            ):
                out.append(f"the answer taken (200 {body}) is not the run's answer event: {taken}")
        elif not (status == 409 and outcome == "cancelled"):
            out.append(f"the answer was refused ({status} {body}) and the run ended {outcome}")
    elif script["ask"] is not None and outcome != "cancelled":
        out.append(f"the run ended {outcome} but its question was never seen")
    whole = [str(i) for i in range(script["events"])]
    if script["ask"] is not None:
        whole.insert(script["ask"], f"got {value}")
    if outcome == "cancelled":
        if texts != whole[: len(texts)]:
            out.append(f"the texts of a cancelled run are not a prefix of {whole}: {texts}")
    elif texts != whole:
        out.append(f"the texts are not {whole}: {texts}")
    if outcome == "done" and (script["fail"] or end.get("result") != script["events"]):
        out.append(f"the run ended done ({end}), its script says otherwise")
    if outcome == "error" and (not script["fail"] or "ValueError" not in json.dumps(end)):
        out.append(f"the run ended with an error its script did not raise: {end}")
    cancel_status = None
    if seen.cancel is not None:
        status, body = seen.cancel
        cancel_status = body.get("status") if isinstance(body, dict) else None
        if status != 200 or body.get("run_id") != run_id:
            out.append(f"the cancel was answered {status} {body}")
        elif cancel_status in ENDS and cancel_status != outcome:
            out.append(f"the cancel was answered {cancel_status!r}, the run ended {outcome!r}")
        elif cancel_status not in ENDS and outcome != "cancelled":
            out.append(f"the cancel was answered {cancel_status!r} but the run ended {outcome!r}")
        after_the_end = trial.cancel is not None and trial.cancel[1] == len(trial.reads)
        if after_the_end and cancel_status != outcome:
            out.append(f"a cancel after the end answered {cancel_status!r}, not {outcome!r}")
    if outcome == "cancelled" and not (cancel_status is not None and cancel_status not in ENDS):
        # Not cancelled by a request: only the owner's last client leaving may cancel it.
        dropped = len(trial.reads) > 1
        if not (trial.on_disconnect == "cancel" and dropped):
            out.append(f"the run was cancelled ({end}) though nobody cancelled it")
        elif end.get("reason") != "the client disconnected":
            out.append(f"the run was cancelled for another reason: {end}")
    if seen.described is not None:
        status, body = seen.described
        want = {
            "run_id": run_id,
            "agent": "scripted",
            "status": outcome,
            "events": len(events),
            "on_disconnect": trial.on_disconnect,
        }
        got = {k: body.get(k) for k in want} if isinstance(body, dict) else body
        if status != 200 or got != want:
            out.append(f"described after the end as {status} {body}, not {want}")
    return out


@pytest.mark.timeout(600)  # about 1.5 min on an idle 2-core machine; more on a busy one
async def test_ten_thousand_trials_of_dropping_resuming_and_cancelling_across_two_servers(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    seed = int(os.environ.get("AGENTNB_TRIALS_SEED") or random.SystemRandom().randrange(10**9))
    only = os.environ.get("AGENTNB_TRIAL")
    indices = [int(only)] if only else list(range(TRIALS))
    print(f"trials: seed {seed} (AGENTNB_TRIALS_SEED={seed} replays them)")
    failures: list[str] = []
    outcomes: Counter[str] = Counter()
    checked = 0
    queue = iter(indices)
    bases = [f"http://127.0.0.1:{server.port}" for server in servers]
    options: dict[str, Any] = {
        "timeout": 10,
        # Idle connections are dropped before uvicorn's 5 s keep-alive ends them (a request
        # on a connection the server is closing would fail with no response).
        "limits": httpx.Limits(keepalive_expiry=KEEPALIVE),
        "verify": ssl.create_default_context(),  # loaded once, not by each client
    }

    async def worker() -> None:
        nonlocal checked
        # A pair of clients per worker: httpx scans its whole pool at every request.
        async with (
            httpx.AsyncClient(base_url=bases[0], **options) as a,
            httpx.AsyncClient(base_url=bases[1], **options) as b,
        ):
            await trials((a, b))

    async def trials(clients: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
        nonlocal checked
        for index in queue:
            trial, seen = plan(seed, index), Seen()
            try:
                async with asyncio.timeout(TRIAL_TIMEOUT):
                    await run_trial(trial, clients, seen)
                found = problems(trial, seen)
            except (AssertionError, httpx.HTTPError, TimeoutError) as exc:
                found = [f"{type(exc).__name__}: {exc}"]
            checked += len(seen.events)
            outcomes[seen.events[-1][1] if found == [] else "failed"] += 1
            if found:
                failures.append(f"trial {index} (run {seen.run_id}, {trial}): {'; '.join(found)}")

    cpu = [time.process_time(), *(server.cpu() for server in servers)]
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    used = [time.process_time(), *(server.cpu() for server in servers)]
    client, one, two = (after - before for after, before in zip(used, cpu, strict=True))
    print(
        f"trials: {len(indices)} trials, {checked} events checked in {elapsed:.1f} s "
        f"({len(indices) / elapsed:.0f} trials/s); outcomes {dict(outcomes)}; "
        f"{len(failures)} failed; CPU s: clients {client:.1f}, servers {one:.1f} + {two:.1f}"
    )
    kinds = Counter(re.sub(r"[0-9a-f]{16}|\d+", "#", f.split("): ", 1)[-1])[:90] for f in failures)
    for kind, count in kinds.most_common(5):
        print(f"trials: {count} failed with {kind}")
    shown = "\n".join(failures[:10])
    assert not failures, f"{len(failures)} of {len(indices)} trials failed (seed {seed}):\n{shown}"


async def test_a_client_that_read_ahead_of_the_store_on_a_resumes_on_b(
    redis: RedisServer, servers: tuple[ServerProcess, ServerProcess]
) -> None:
    """A's client gets each event from A's memory at once; A's writer puts it in Redis a
    little later. A client that resumes on B in between (a busy Redis makes it wide:
    here writes are paused) gets the rest of the run, not 400 "past the end"."""
    a, b = (f"http://127.0.0.1:{server.port}" for server in servers)
    body = {"agent": "paced", "input": 20, "on_disconnect": "continue"}
    async with (
        httpx.AsyncClient(base_url=a, timeout=10) as on_a,
        httpx.AsyncClient(base_url=b, timeout=10) as on_b,
        aioredis.Redis.from_url(redis.url) as control,
    ):
        async with on_a.stream("POST", "/api/stream", json=body) as response:
            run_id = response.headers["x-agentnb-run-id"]
            await control.client_pause(1000, all=False)  # writes wait 1 s, reads go on
            parser, first = SseParser(), list[SseEvent]()
            chunks = response.aiter_raw()
            while len(first) < 5:
                first += parser.feed(await anext(chunks))
        last = first[-1].id
        resumed = await on_b.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": last})
    assert resumed.status_code == 200, resumed.text
    rest = SseParser().feed(resumed.content)
    ids = [e.id for e in [*first, *rest]]
    assert ids == [f"{run_id}:{n}" for n in range(len(ids))]
    assert [json.loads(e.data)["kind"] for e in rest][-1] == "done"
    assert len(ids) == 21
