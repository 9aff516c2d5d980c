"""TEMPORARY (issue 20): the hand-written HTTP/1.1 front end, kept only for the benchmark.

Parses requests from the byte stream, hands them to `rest.RESTFrontEnd` and
writes its answers; enforces the body and header limits, idle timeouts and
the graceful drain on shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from textrnn.serving.errors import ServingError, invalid
from textrnn.serving.legacy_rest import RESTFrontEnd

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
IDLE_SECONDS = 120.0  # idle keep-alive connections (and stalled requests) are closed after this
# An oversized body up to this much over the limit is read and dropped before closing.
DRAIN_BYTES = 8 * 1024 * 1024


_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_STATUS_LINES: dict[int, str] = {}


def http_answer(status: int, payload: Any, close: bool) -> bytes:
    """One HTTP/1.1 response: a JSON body, or Prometheus text when `payload` is a str."""
    if isinstance(payload, str):
        body, kind = payload.encode("utf-8"), "text/plain; version=0.0.4"
    else:
        try:
            body = _JSON_ENCODER.encode(payload).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (echoed from a request): escape it
            body = json.dumps(payload, separators=(",", ":")).encode("ascii")
        kind = "application/json"
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        line = _STATUS_LINES.setdefault(status, f"HTTP/1.1 {status} {reason}\r\n")
    head = (
        f"{line}Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode("latin-1") + body


@dataclass
class _Head:
    """A parsed request line and headers, waiting for its body."""

    method: str
    target: str
    keep_alive: bool
    length: int
    body_start: int


class _HTTPConnection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection on the REST event loop.

    Requests are parsed from the byte stream and answered in order, one at a
    time (pipelined requests wait in the buffer, which pauses reading when it
    grows past one maximum body). Anything malformed is answered with its
    status and the connection closed; the loop itself never raises.
    """

    def __init__(self, server: RESTServer) -> None:
        self.server = server
        self.front = server.front
        self.limit = server.front.options.max_body_bytes
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.head: _Head | None = None
        self.busy = False  # a request is being answered
        self.answered = 0  # requests answered on this connection so far
        self.closing = False
        self.paused = False
        self.continue_sent = False
        self.discard = 0  # bytes of an oversized body still to read and drop before closing
        self.last_active = time.monotonic()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._end()
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.discard:
            dropped = min(self.discard, len(data))
            self.discard -= dropped
            if not self.discard:
                self._close()
            return
        if self.closing:
            return
        self.buffer += data
        if len(self.buffer) > self.limit + MAX_HEADER_BYTES and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        if not self.busy:
            self._next()

    def idle(self, now: float) -> None:
        """Close the connection when idle for `IDLE_SECONDS` (called by the server)."""
        if not self.busy and now - self.last_active > IDLE_SECONDS:
            self._close()

    # -- requests

    def _next(self) -> None:
        """Start answering the next complete request in the buffer, if there is one."""
        try:
            request = self._parse()
        except ServingError as error:
            self.front.stats.add(requests=1, errors=1)
            self._send(error.http_status, {"error": error.message}, close=True)
            return
        if request is None:
            if self.paused and len(self.buffer) <= self.limit + MAX_HEADER_BYTES:
                self.paused = False
                self.transport.resume_reading()  # type: ignore[union-attr]
            return
        head, body = request
        self._begin()
        if head.method in ("GET", "POST"):
            self.front.handle_on_loop(
                head.method,
                head.target,
                body,
                lambda status, payload: self._answered(status, payload, head.keep_alive),
            )
        else:
            self.front.stats.add(requests=1, errors=1)
            self._send(
                405,
                {"error": f"method {head.method[:20]} not allowed; use GET or POST"},
                close=not head.keep_alive,
            )
            self._done()

    def _answered(self, status: int, payload: Any, keep_alive: bool) -> None:
        self._send(status, payload, close=not keep_alive)
        self._done()

    def _begin(self) -> None:
        self.busy = True
        self.server.busy += 1
        if not self.answered:
            self.server.busy_first += 1

    def _end(self) -> None:
        if not self.busy:
            return  # the connection was lost while its answer was on the way
        self.busy = False
        self.server.busy -= 1
        if not self.answered:
            self.server.busy_first -= 1
        self.answered += 1

    def _done(self) -> None:
        self._end()
        self.last_active = time.monotonic()
        if not self.closing:
            self._next()

    def _send(self, status: int, payload: Any, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        close = close or self.server.draining
        self.transport.write(http_answer(status, payload, close))
        if close:
            self._close()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()  # after the buffered answer is written

    def _parse(self) -> tuple[_Head, bytes] | None:
        """The next request (head, body), None while incomplete; `ServingError` if malformed."""
        if self.head is None:
            self.head = self._parse_head()
            if self.head is None:
                return None
        head = self.head
        end = head.body_start + head.length
        if len(self.buffer) < end:
            if not self.continue_sent and self._expects_continue:
                self.continue_sent = True
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
            return None
        body = bytes(self.buffer[head.body_start : end])
        del self.buffer[:end]
        self.head, self.continue_sent = None, False
        return head, body

    def _parse_head(self) -> _Head | None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEADER_BYTES:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"request headers exceed {MAX_HEADER_BYTES} bytes",
                    http_status=431,
                )
            return None
        if end > MAX_HEADER_BYTES:
            raise ServingError(
                "INVALID_ARGUMENT", f"request headers exceed {MAX_HEADER_BYTES} bytes", 431
            )
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            raise invalid(f"malformed HTTP request line: {lines[0][:100]!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise invalid(f"malformed HTTP header line: {line[:100]!r}")
            headers[name.lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = (
            "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        )
        self._expects_continue = headers.get("expect", "").lower() == "100-continue"
        if headers.get("transfer-encoding", "identity").lower() != "identity":
            raise ServingError(
                "INVALID_ARGUMENT",
                "chunked request bodies are not supported; send Content-Length",
                http_status=411,
            )
        length_header = headers.get("content-length")
        if length_header is None:
            if method == "POST":
                raise ServingError(
                    "INVALID_ARGUMENT", "a POST needs a Content-Length header", http_status=411
                )
            length = 0
        elif not length_header.isdigit():
            raise invalid("invalid Content-Length header")
        else:
            length = int(length_header)
        if length > self.limit:
            self._refuse_oversized(length, end + 4)
            return None
        return _Head(method, target, keep_alive, length, end + 4)

    def _refuse_oversized(self, length: int, body_start: int) -> None:
        """413 for a body over the limit; read and drop a moderately oversized one first,
        so the client (still sending) gets the answer instead of a reset connection."""
        self.front.stats.add(requests=1, errors=1)
        already = len(self.buffer) - body_start
        del self.buffer[:]
        self._begin()  # nothing more is parsed on this connection
        self._send(
            413,
            {
                "error": f"request body of {length} bytes exceeds the limit of {self.limit} bytes "
                "(the server's --max-body-bytes)"
            },
            close=False,
        )
        remaining = length - already
        if self._expects_continue or remaining <= 0 or length > self.limit + DRAIN_BYTES:
            self._close()
        else:
            self.discard = remaining

    _expects_continue = False


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv, in C) if installed (the `serving` extra), else asyncio's."""
    if os.environ.get("TEXTRNN_EVENT_LOOP") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class RESTServer:
    """The REST front end: an asyncio event loop on its own thread, bound at construction."""

    def __init__(self, address: tuple[str, int], front: RESTFrontEnd) -> None:
        self.front = front
        self.connections: set[_HTTPConnection] = set()
        # Connections answering a request; those on their first one. Changed on the loop only.
        self.busy = 0
        self.busy_first = 0
        self.draining = False  # shutting down: answer what is in flight, then close
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.create_server(address, family=family, backlog=256)
        self.server_address = self.socket.getsockname()
        self.loop = _new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._run, name="rest", daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _HTTPConnection(self), sock=self.socket)
        )
        self.loop.call_later(1.0, self._reap_idle)
        self._started.set()
        try:
            self.loop.run_forever()
        finally:
            self._server.close()
            for connection in list(self.connections):
                connection._close()
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def all_waiting(self) -> bool:
        """Every open connection has sent a request and waits for its answer (from any thread).

        Then no other request can arrive before an answer goes out, unless a new
        connection opens. A connection still on its first request may be a client
        that connects per request, whose next requests would come on new
        connections: while one is open, this says no.
        """
        return self.busy_first == 0 and self.busy >= len(self.connections)

    def _reap_idle(self) -> None:
        now = time.monotonic()
        for connection in list(self.connections):
            connection.idle(now)
        self.loop.call_later(1.0, self._reap_idle)

    def shutdown(self, grace: float = 0.0) -> None:
        """Refuse new connections, answer the requests in flight (for at most `grace`
        seconds; each ends by the request timeout anyway), then close every connection."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._drain, time.monotonic() + grace)
            self._thread.join(grace + 5)
        else:
            self.socket.close()
        self.front.shutdown()

    def _drain(self, deadline: float) -> None:
        self.draining = True  # every answer from now on closes its connection
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if not connection.busy:
                connection._close()  # idle, or a request not complete yet
        if self.busy > 0:
            logger.warning("stopping: answering %d request(s) in flight first", self.busy)
        self._stop_when_answered(deadline)

    def _stop_when_answered(self, deadline: float) -> None:
        if self.busy <= 0 or time.monotonic() >= deadline:
            self.loop.stop()
        else:
            self.loop.call_later(0.01, self._stop_when_answered, deadline)
