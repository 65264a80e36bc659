"""The web front's pure wire encoders and parsers, byte for byte; and the tests' own SSE parser.

``sse_frame``, ``ws_event``, ``ws_message`` and ``parse_event_id`` never touch
the network, so each is checked against literal bytes. The SSE parser in
harness/wire.py (which the server tests use to read raw bytes) is checked
against the WHATWG examples here, so those tests do not rest on an unchecked parser.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentnb
from agentnb.server._errors import BadEventId
from agentnb.server._wire import (
    event_id,
    parse_event_id,
    sse_frame,
    ws_event,
    ws_message,
)
from harness.wire import SseEvent, SseParser, expected_bytes, strip_pings

RUN = "5f0c2a9e1b7d4c3a"
STAMPS = {"run_id": RUN, "seq": 3, "path": ("poet",), "ts": 1764000000.25}
HEAD = f'"run_id":"{RUN}","seq":3,"path":["poet"],"ts":1764000000.25'

# Each event with its exact JSON form; the SSE frame and WebSocket frame must carry it as is.
FRAMES: list[tuple[agentnb.Event, str]] = [
    (agentnb.TextChunk("hello", **STAMPS), f'{{"kind":"text",{HEAD},"text":"hello"}}'),  # type: ignore[arg-type]
    (
        # Line breaks are escaped by JSON; the Unicode separators, NUL's escape and emoji stay.
        agentnb.TextChunk("a\r\nb\rc\nd\u2028e\u2029f\x85g\x00😀", **STAMPS),  # type: ignore[arg-type]
        f'{{"kind":"text",{HEAD},"text":"a\\r\\nb\\rc\\nd\u2028e\u2029f\x85g\\u0000😀"}}',
    ),
    (agentnb.Status("thinking", **STAMPS), f'{{"kind":"status",{HEAD},"message":"thinking"}}'),  # type: ignore[arg-type]
    (
        agentnb.ToolCall("look_up", {"term": "sea"}, call_id="c1", **STAMPS),  # type: ignore[arg-type]
        f'{{"kind":"tool_call",{HEAD},"name":"look_up","args":{{"term":"sea"}},"call_id":"c1"}}',
    ),
    (
        agentnb.ToolResult("look_up", [1, None], call_id="c1", is_error=True, **STAMPS),  # type: ignore[arg-type]
        f'{{"kind":"tool_result",{HEAD},"name":"look_up","result":[1,null],"call_id":"c1",'
        '"is_error":true}',
    ),
    (
        agentnb.Custom("my.kind:x-y_1", {"done": 3}, **STAMPS),  # type: ignore[arg-type]
        f'{{"kind":"my.kind:x-y_1",{HEAD},"data":{{"done":3}}}}',
    ),
    (agentnb.Done({"answer": 42}, **STAMPS), f'{{"kind":"done",{HEAD},"result":{{"answer":42}}}}'),  # type: ignore[arg-type]
    (
        agentnb.Error("ValueError", "bad", "Traceback:\n  line 1\n", **STAMPS),  # type: ignore[arg-type]
        f'{{"kind":"error",{HEAD},"type":"ValueError","message":"bad",'
        '"traceback":"Traceback:\\n  line 1\\n"}',
    ),
    (agentnb.Cancelled("stop", **STAMPS), f'{{"kind":"cancelled",{HEAD},"reason":"stop"}}'),  # type: ignore[arg-type]
]
FRAME_IDS = [e.kind for e, _ in FRAMES]


def on_the_wire(line: str) -> str:
    """The JSON line as ``data:`` carries it: U+2028, U+2029 and U+0085 escaped (same value)."""
    return line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")


# -- SSE frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(("event", "line"), FRAMES, ids=FRAME_IDS)
def test_sse_frame_is_id_event_and_one_data_line_with_crlf(event: agentnb.Event, line: str) -> None:
    assert event.to_json() == line
    frame = sse_frame(event, line, RUN, 41)
    assert frame == (
        f"id: {RUN}:41\r\nevent: {event.kind}\r\ndata: ".encode()
        + on_the_wire(line).encode()
        + b"\r\n\r\n"
    )
    # Only the four CRLFs of the framing: no raw CR or LF anywhere in the data line.
    assert frame.count(b"\r") == frame.count(b"\n") == 4


@pytest.mark.parametrize(("event", "line"), FRAMES, ids=FRAME_IDS)
@pytest.mark.parametrize("run_id", [RUN, "a\r\nb", "c\nd"])
def test_sse_frame_is_what_sse_starlette_makes_of_it(
    event: agentnb.Event, line: str, run_id: str
) -> None:
    # The frame is built without ServerSentEvent (it is on emit's hot path): the same bytes,
    # and an id with a line break in it still loses it.
    from sse_starlette import ServerSentEvent

    made = ServerSentEvent(on_the_wire(line), event=event.kind, id=f"{run_id}:5").encode()
    assert sse_frame(event, line, run_id, 5) == made


def test_sse_frame_escapes_what_naive_readers_split_on_and_keeps_other_utf8_raw() -> None:
    event, line = FRAMES[1]
    frame = sse_frame(event, line, RUN, 0)
    assert b"d\\u2028e\\u2029f\\u0085g" in frame
    for separator in ("\u2028", "\u2029", "\x85"):
        assert separator.encode() not in frame
    assert frame.decode("utf-8").splitlines()[2] == "data: " + on_the_wire(line)
    assert "😀".encode() == b"\xf0\x9f\x98\x80"
    assert b"\xf0\x9f\x98\x80" in frame
    assert b"\\u0000" in frame
    assert b"\x00" not in frame


@pytest.mark.parametrize(("event", "line"), FRAMES, ids=FRAME_IDS)
def test_sse_frames_parse_back_to_the_event(event: agentnb.Event, line: str) -> None:
    frame = sse_frame(event, line, RUN, 7)
    assert SseParser().feed(frame) == [SseEvent(event.kind, on_the_wire(line), f"{RUN}:7")]
    assert agentnb.Event.from_json(on_the_wire(line)) == event


def test_sse_frame_uses_the_json_it_is_given_and_the_position_as_id() -> None:
    # The frame carries the JSON made once per event, not a second encoding of the event.
    event = agentnb.TextChunk("x", **STAMPS)  # type: ignore[arg-type]
    assert sse_frame(event, '{"made":"once"}', "r", 0) == (
        b'id: r:0\r\nevent: text\r\ndata: {"made":"once"}\r\n\r\n'
    )
    assert sse_frame(event, "{}", "r", 123456789) == (
        b"id: r:123456789\r\nevent: text\r\ndata: {}\r\n\r\n"
    )


def test_event_id_is_run_id_colon_position() -> None:
    assert event_id(RUN, 0) == f"{RUN}:0"
    assert event_id("ab", 41) == "ab:41"


texts = st.text(alphabet=st.characters(codec="utf-8"))


@settings(max_examples=300, deadline=None)
@given(texts, st.integers(0, 10**9))
def test_any_text_makes_one_frame_that_parses_back_exactly(text: str, n: int) -> None:
    event = agentnb.TextChunk(text, **STAMPS)  # type: ignore[arg-type]
    line = event.to_json()
    frame = sse_frame(event, line, RUN, n)
    assert frame.count(b"\r\n") == 4
    assert frame.replace(b"\r\n", b"").count(b"\r") == frame.replace(b"\r\n", b"").count(b"\n") == 0
    (parsed,) = SseParser().feed(frame)
    assert parsed == SseEvent("text", on_the_wire(line), f"{RUN}:{n}")
    assert agentnb.Event.from_json(parsed.data) == event


# -- WebSocket frames ---------------------------------------------------------------------


@pytest.mark.parametrize(("event", "line"), FRAMES, ids=FRAME_IDS)
def test_ws_event_wraps_the_event_json_as_is(event: agentnb.Event, line: str) -> None:
    frame = ws_event(line, RUN, 9)
    assert frame == f'{{"type":"event","run_id":"{RUN}","id":"{RUN}:9","event":{line}}}'
    message = json.loads(frame)
    assert list(message) == ["type", "run_id", "id", "event"]
    assert message["event"] == json.loads(line)
    assert agentnb.Event.from_dict(message["event"]) == event


def test_ws_message_is_compact_json_with_type_first_and_non_ascii_raw() -> None:
    assert ws_message("started", run_id="ab", agent="poet", ref=None) == (
        '{"type":"started","run_id":"ab","agent":"poet","ref":null}'
    )
    assert ws_message("error", error="bad_json", message="é\u2028😀\n", ref=[1, {"a": 2.5}]) == (
        '{"type":"error","error":"bad_json","message":"é\u2028😀\\n","ref":[1,{"a":2.5}]}'
    )
    assert ws_message("pong") == '{"type":"pong"}'


# -- Last-Event-ID ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "n"),
    [
        (f"{RUN}:0", 0),
        (f"{RUN}:41", 41),
        (f"{RUN}:007", 7),
        (f" {RUN}:5 \t", 5),
        (f"{RUN}:{'9' * 18}", 10**18 - 1),
    ],
)
def test_parse_event_id_reads_the_position(value: str, n: int) -> None:
    assert parse_event_id(value, RUN) == n


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "is not <run id>:<n>"),
        (RUN, "is not <run id>:<n>"),
        (f"{RUN}:", "is not <run id>:<n>"),
        (f"{RUN}:x", "is not <run id>:<n>"),
        (f"{RUN}:-1", "is not <run id>:<n>"),
        (f"{RUN}:+1", "is not <run id>:<n>"),
        (f"{RUN}:1.5", "is not <run id>:<n>"),
        (f"{RUN}:1e3", "is not <run id>:<n>"),
        (f"{RUN}: 1", "is not <run id>:<n>"),
        (f"{RUN}:\uff11", "is not <run id>:<n>"),  # a fullwidth digit: isdigit() but not ASCII
        (f"{RUN}:\u0661", "is not <run id>:<n>"),  # an Arabic-Indic digit
        (f"{RUN}:{'9' * 19}", "is not <run id>:<n>"),
        ("0123456789abcdef:3", "belongs to run '0123456789abcdef'"),
        (":3", "belongs to run ''"),
        (f"{RUN}:3:4", f"belongs to run '{RUN}:3'"),
        (f"x{RUN}:3", f"belongs to run 'x{RUN}'"),
    ],
)
def test_parse_event_id_refuses_malformed_ids_and_says_why(value: str, says: str) -> None:
    with pytest.raises(BadEventId) as caught:
        parse_event_id(value, RUN)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert says in message
    assert repr(value) in message
    # It says what a good id looks like.
    assert f"'{RUN}:41'" in message or f"run {RUN!r}" in message


# -- the tests' own SSE parser, against the WHATWG rules ----------------------------------


def test_parser_handles_every_line_end_and_comments() -> None:
    stream = (
        b": a comment\r\n"
        b"event: one\r\nid: a\r\ndata: x\r\n\r\n"
        b"event: two\nid: b\ndata: y\ndata: z\n\n"
        b"event: three\rid: c\rdata:no space\rdata:  two spaces\r\r"
    )
    parser = SseParser()
    assert parser.feed(stream) == [
        SseEvent("one", "x", "a"),
        SseEvent("two", "y\nz", "b"),
        SseEvent("three", "no space\n two spaces", "c"),
    ]
    assert parser.comments == [" a comment"]


def test_parser_keeps_unicode_separators_inside_lines() -> None:
    data = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg"
    assert SseParser().feed(f"data: {data}\n\n".encode()) == [SseEvent("message", data, "")]


def test_parser_follows_the_spec_on_ids_empty_data_fields_bom_and_the_end() -> None:
    parser = SseParser()
    events = parser.feed(
        b"\xef\xbb\xbfdata: first\n\n"  # a BOM at the very start is dropped
        b"id: 1\ndata\n\n"  # "data" alone: an empty data line, still an event
        b"id: bad\x00id\ndata: kept id\n\n"  # an id with NUL is ignored
        b"event: nothing\n\n"  # no data: no event, and the type is reset
        b"data: typed?\n\n"
        b"id\ndata: id reset\n\n"  # "id" alone sets the id to ""
        b"retry: 10\nunknown: x\ndata: fields\n\n"
        b"data: never finished\n"  # dropped at the end of the stream
    )
    assert events == [
        SseEvent("message", "first", ""),
        SseEvent("message", "", "1"),
        SseEvent("message", "kept id", "1"),
        SseEvent("message", "typed?", "1"),
        SseEvent("message", "id reset", ""),
        SseEvent("message", "fields", ""),
    ]


def test_parser_gives_the_same_events_however_the_bytes_are_split() -> None:
    stream = (
        "event: text\r\nid: r:0\r\ndata: 😀 é\u2028\r\n\r\n"
        ": ping\r\n\r\n"
        "event: a\rid: r:1\rdata: x\r\r"
        "event: b\nid: r:2\ndata: \x85\n\n"
    ).encode()
    whole = SseParser().feed(stream)
    assert len(whole) == 3
    rng = random.Random(1)
    for _ in range(200):
        parser = SseParser()
        events: list[SseEvent] = []
        at = 0
        while at < len(stream):
            step = rng.choice((1, 1, 2, 3, 5, 17))
            events += parser.feed(stream[at : at + step])
            at += step
        assert events == whole
    # A CR that ends one chunk and the LF that starts the next are one line end.
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == [SseEvent("message", "a", "")]
    assert parser.feed(b"\ndata: b\r\n\r\n") == [SseEvent("message", "b", "")]


def test_expected_bytes_is_the_server_framing() -> None:
    event, line = FRAMES[0]
    assert expected_bytes([SseEvent("text", line, f"{RUN}:2")]) == sse_frame(event, line, RUN, 2)


def test_strip_pings_removes_only_whole_comment_blocks() -> None:
    frame = b'id: r:0\r\nevent: text\r\ndata: {"text":": ping"}\r\n\r\n'
    ping = b": ping - 2026-01-01 00:00:00.000000+00:00\r\n\r\n"
    assert strip_pings(ping + frame + ping + ping + frame + ping) == frame + frame
    assert strip_pings(frame) == frame
