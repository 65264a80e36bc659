"""HTTP/1.1 and Server-Sent Events by hand: requests, heads, chunked bodies, SSE, raw sockets.

Written out rather than through an HTTP client, so a test can hold a socket that
never reads, send a request a byte at a time or check a response byte for byte,
and a benchmark's client costs about a microsecond per event. :class:`SseParser`
follows the WHATWG ``text/event-stream`` rules itself (line ends CRLF, LF or a
lone CR, also split across network chunks; ``:`` comments; ``id`` with NUL
ignored; a trailing unfinished event dropped), so a test checks a server's bytes
without trusting httpx-sse alone.
"""

from __future__ import annotations

import codecs
import json
import re
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = [
    "ChunkedBody",
    "Posted",
    "SseEvent",
    "SseParser",
    "connect",
    "dechunk",
    "expected_bytes",
    "post_json",
    "posted",
    "read_response",
    "read_until_closed",
    "request",
    "split_head",
    "strip_pings",
]

_EOL = re.compile(r"\r\n|\r|\n")
# A keep-alive comment: a block of its own, so at the start or after a blank line.
_PING = re.compile(rb"(?:\A|(?<=\r\n\r\n)): ping[^\r\n]*\r\n\r\n")


# -- requests and responses ------------------------------------------------------------


def request(
    method: str, path: str, host: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> bytes:
    """The bytes of one HTTP/1.1 request (a Content-Length when there is a body, or a POST)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def post_json(path: str, host: str, value: object) -> bytes:
    """``POST path`` with *value* as its JSON body, asking for an event stream."""
    headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
    return request("POST", path, host, json.dumps(value).encode(), headers)


def split_head(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """The status, headers (lower-case names) and what follows the head, of a response."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, rest


def connect(base: str, timeout: float = 10) -> socket.socket:
    """A TCP connection to the server at *base* (``http://host:port``)."""
    host, _, port = base.removeprefix("http://").rpartition(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (or none: an empty body) from *sock*."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed after {raw!r}")
        raw += chunk
    length = int(split_head(raw)[1].get("content-length", "0"))
    while len(raw.partition(b"\r\n\r\n")[2]) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed after {raw!r}")
        raw += chunk
    return raw


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """What arrives on *sock* until the server closes it, which must be *within* seconds."""
    deadline = time.monotonic() + within
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"still open {within} s later; received {data!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


@dataclass
class Posted:
    """A request sent on a raw socket whose response head has been read, and no more."""

    sock: socket.socket
    status: int
    headers: dict[str, str]  # lower-case names
    head: bytes  # the response's head, its blank line included


@contextmanager
def posted(base: str, path: str, body: object, *, rcvbuf: int = 4096) -> Iterator[Posted]:
    """POST *body* (JSON) to *path* on a socket with a small receive buffer; read the head only.

    The socket reads nothing of the body (a client that stalls, until the caller reads).
    """
    host = base.removeprefix("http://")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(30)
        address, _, port = host.rpartition(":")
        sock.connect((address, int(port)))
        sock.sendall(post_json(path, host, body))
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = sock.recv(1)
            if not byte:
                raise AssertionError(f"closed after {head!r}")
            head += byte
        status, headers, _ = split_head(head)
        yield Posted(sock, status, headers, head)


class ChunkedBody:
    """Decodes an HTTP/1.1 chunked body as it arrives (:meth:`feed`, or :meth:`events`)."""

    __slots__ = ("_events", "_raw", "finished")

    def __init__(self) -> None:
        self._raw = bytearray()  # received, not decoded yet
        self._events = bytearray()  # decoded, after the last complete SSE event
        self.finished = False  # the last (empty) chunk has arrived

    def _decode(self, data: bytes, out: bytearray) -> None:
        """Take what the socket gave; append the body bytes of the chunks now complete."""
        raw = self._raw
        raw += data
        pos = 0
        size_of_raw = len(raw)
        while not self.finished:
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(raw[pos:eol].split(b";", 1)[0], 16)
            start = eol + 2
            end = start + size
            if end + 2 > size_of_raw:
                break
            pos = end + 2
            if size == 0:
                self.finished = True
            out += raw[start:end]
        if pos:
            del raw[:pos]

    def feed(self, data: bytes) -> bytes:
        """Take what the socket gave; return the body bytes of the chunks now complete."""
        out = bytearray()
        self._decode(data, out)
        return bytes(out)

    def events(self, data: bytes) -> bytes:
        """As :meth:`feed`, but only up to the end of the last complete SSE event."""
        body = self._events
        self._decode(data, body)
        cut = body.rfind(b"\r\n\r\n")
        if cut < 0:
            return b""
        complete = bytes(body[: cut + 4])
        del body[: cut + 4]
        return complete


def dechunk(body: bytes) -> bytes:
    """A whole chunked body, decoded (it must end with its last, empty chunk)."""
    decoder = ChunkedBody()
    out = decoder.feed(body)
    if not decoder.finished:
        raise AssertionError(f"the chunked body does not end: ...{body[-100:]!r}")
    return out


# -- Server-Sent Events -------------------------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    """One dispatched SSE event: its type ("message" if none), data and last event id."""

    event: str
    data: str
    id: str


class SseParser:
    """An incremental ``text/event-stream`` parser, written from the WHATWG spec."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line = ""  # the unfinished line
        self._after_cr = False  # the last line ended with CR: a leading LF belongs to it
        self._started = False  # the BOM check is done
        self._type = ""
        self._data = ""
        self.last_event_id = ""
        self.comments: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by *chunk* (any split of the stream gives the same events)."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        events: list[SseEvent] = []
        start = 0
        for end in _EOL.finditer(text):
            line = self._line + text[start : end.start()]
            self._line = ""
            start = end.end()
            event = self._process(line)
            if event is not None:
                events.append(event)
        self._line += text[start:]
        return events

    def _process(self, line: str) -> SseEvent | None:
        if not line:
            data, kind = self._data, self._type
            self._data = self._type = ""
            if not data:
                return None
            return SseEvent(kind or "message", data.removesuffix("\n"), self.last_event_id)
        if line.startswith(":"):
            self.comments.append(line[1:])
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data += value + "\n"
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        # retry and unknown fields change nothing these readers look at
        return None


def expected_bytes(events: list[SseEvent]) -> bytes:
    """The exact bytes sse-starlette frames *events* in (CRLF, id, event, one data line)."""
    return b"".join(
        f"id: {e.id}\r\nevent: {e.event}\r\ndata: {e.data}\r\n\r\n".encode() for e in events
    )


def strip_pings(raw: bytes) -> bytes:
    """*raw* without its ``: ping ...`` keep-alive comments."""
    return _PING.sub(b"", raw)
