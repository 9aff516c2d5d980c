"""The REST API's HTTP/1.1 server: aiohttp's (llhttp parser) on a uvloop event loop.

aiohttp parses requests, keeps connections alive, answers pipelined requests in
order, reads chunked bodies, limits header lines and closes idle connections.
This module adds only what it does not do by itself:

- protocol errors answered like every other error, `{"error": "..."}` in JSON,
  with 431 for an oversized header line or too many headers (aiohttp says 400);
- a header-read timeout (aiohttp times only a connection's idle spells);
- a cap on concurrent connections (answered 503 and closed beyond it);
- which connections wait for an answer, for the batcher's early batch
  (`all_waiting`);
- the graceful drain on shutdown.

Routing and the API itself are `rest.RESTFrontEnd.dispatch`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
import threading
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from textrnn.serving.http_messages import json_answer
from textrnn.serving.options import ServerOptions
from textrnn.serving.rest import RESTFrontEnd

logger = logging.getLogger(__name__)

MAX_HEADER_LINES = 128  # aiohttp's default; more is answered 431
REFUSED_LINGER_SECONDS = 1.0  # a connection over --max-connections is closed after this


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


def refusal(status: int, message: str) -> bytes:
    """A whole HTTP answer that closes the connection, for a connection aiohttp never sees."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Connection(RequestHandler):
    """aiohttp's connection handler, plus textrnn's guards and waiting count."""

    def __init__(self, manager: web.Server, *, rest: RESTServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.rest = rest
        self.waiting = 0  # requests handed to the front end and not answered yet
        self.answered = 0
        self.refused = False
        self._head_timer: asyncio.TimerHandle | None = None

    # -- connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        rest = self.rest
        if rest.draining or len(rest.connections) >= rest.options.max_connections:
            self.refused = True
            message = (
                "the server is shutting down"
                if rest.draining
                else f"too many connections (the server's --max-connections is "
                f"{rest.options.max_connections}); retry later"
            )
            # Answer, half-close, and read (dropping it) whatever the client sends for a
            # moment before closing: closing on unread data would reset the connection and
            # could lose the answer.
            transport.write(refusal(503, message))  # type: ignore[attr-defined]
            transport.write_eof()  # type: ignore[attr-defined]
            self._loop.call_later(REFUSED_LINGER_SECONDS, transport.close)
            return
        rest.connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused:
            return
        self.rest.connections.discard(self)
        self._stop_head_timer()
        self._set_waiting(0)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        parsed = self._request_count
        idle = self._waiter is not None and not self._waiter.done()
        super().data_received(data)
        if self._request_count != parsed:
            self._stop_head_timer()
        elif data and idle and self._head_timer is None:
            # The first bytes of a request's head: it must be complete in time.
            self._head_timer = self._loop.call_later(
                self.rest.options.header_timeout_seconds, self._head_overdue
            )

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self.transport is not None and self._waiter is not None:
            self.rest.front.stats.add(requests=1, errors=1)
            self.force_close()  # as nginx and libevent do: no answer, the connection closes

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    # -- requests

    def _set_waiting(self, waiting: int, answered: int | None = None) -> None:
        """Keep the server's counts of connections waiting for an answer (on the loop)."""
        answered = self.answered if answered is None else answered
        was_busy, was_first = self.waiting > 0, self.waiting > 0 and self.answered == 0
        self.waiting, self.answered = waiting, answered
        is_busy, is_first = waiting > 0, waiting > 0 and answered == 0
        self.rest.busy += is_busy - was_busy
        self.rest.busy_first += is_first - was_first

    def begin(self) -> None:
        """A request is handed to the front end (which may queue it for a batch at once).

        Counted here, not when aiohttp parses it: a request parsed but not yet
        handed over must not let `all_waiting` run a batch without it.
        """
        self._set_waiting(self.waiting + 1)

    def end(self) -> None:
        """The request's answer is ready (and written right after)."""
        if self.waiting > 0:
            self._set_waiting(self.waiting - 1, self.answered + 1)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp could not parse (or whose handler failed): a JSON answer."""
        self.rest.front.stats.add(requests=1, errors=1)
        if isinstance(exc, LineTooLong):
            status, text = (
                431,
                f"request header line exceeds {self.max_field_size} bytes "
                "(the server's --max-header-bytes)",
            )
        elif isinstance(exc, HttpProcessingError) and "Too many headers" in str(exc.message):
            status, text = 431, f"more than {self.max_headers} request header lines"
        elif isinstance(exc, HttpProcessingError):
            status, text = 400, f"malformed HTTP request: {_one_line(exc.message)}"
        else:
            if exc is not None:
                logger.error("internal error answering a request", exc_info=exc)
            text = f"internal error ({status})"
        answer = json_answer(status, {"error": text})
        answer.force_close()
        return answer


def _one_line(message: str) -> str:
    """aiohttp's parser message on one line: without the caret line under the culprit."""
    parts = [line.strip() for line in message.splitlines() if line.strip() not in ("", "^")]
    return " ".join(part for part in parts if set(part) != {"^"})[:300]


class _HTTPServer(web.Server):
    """aiohttp's low-level server, making `_Connection`s."""

    def __init__(self, rest: RESTServer, **kwargs: Any) -> None:
        super().__init__(rest.handle, loop=rest.loop, **kwargs)
        self.rest = rest

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, rest=self.rest, **self._kwargs)


class RESTServer:
    """The REST front end: an aiohttp server on its own thread and event loop, bound at
    construction."""

    def __init__(self, address: tuple[str, int], front: RESTFrontEnd) -> None:
        self.front = front
        self.options: ServerOptions = front.options
        self.connections: set[_Connection] = set()
        # Connections waiting for an answer; those on their first request. On the loop only.
        self.busy = 0
        self.busy_first = 0
        self.draining = False  # shutting down: answer what is in flight, then close
        _allow_open_files(self.options.max_connections + 256)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.create_server(address, family=family, backlog=1024)
        self.server_address = self.socket.getsockname()
        self.loop = _new_event_loop()
        self._listener: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._run, name="rest", daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        options = self.options
        http = _HTTPServer(
            self,
            keepalive_timeout=options.idle_timeout_seconds,
            max_line_size=options.max_header_bytes,
            max_field_size=options.max_header_bytes,
            max_headers=MAX_HEADER_LINES,
            access_log=None,
        )
        self._listener = self.loop.run_until_complete(
            self.loop.create_server(http, sock=self.socket, backlog=1024)
        )
        self._started.set()
        try:
            self.loop.run_forever()
        finally:
            self._listener.close()
            for connection in list(self.connections):
                connection.force_close()
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """aiohttp's request handler: the front end's answer, counted as given."""
        connection: _Connection = request.protocol  # type: ignore[assignment]
        connection.begin()
        try:
            answer = await self.front.dispatch(request)
        finally:
            connection.end()
        if self.draining:
            answer.force_close()
        return answer

    def all_waiting(self) -> bool:
        """Every open connection has sent a request and waits for its answer (from any thread).

        Then no other request can arrive before an answer goes out, unless a new
        connection opens. A connection still on its first request may be a client
        that connects per request, whose next requests would come on new
        connections: while one is open, this says no.
        """
        return self.busy_first == 0 and self.busy >= len(self.connections)

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
        if self._listener is not None:
            self._listener.close()
        for connection in list(self.connections):
            if connection.waiting:
                connection.close()  # after its answer
            else:
                connection.force_close()  # idle, or a request not complete yet
        if self.busy > 0:
            logger.warning("stopping: answering %d request(s) in flight first", self.busy)
        self._stop_when_answered(deadline)

    def _stop_when_answered(self, deadline: float) -> None:
        if not self.connections or time.monotonic() >= deadline:
            self.loop.stop()
        else:
            self.loop.call_later(0.01, self._stop_when_answered, deadline)


def _allow_open_files(needed: int) -> None:
    """Raise this process's open-file limit towards `needed` (within the hard limit): each
    connection holds a descriptor, and the usual soft limit (1024) is below --max-connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
        except (ValueError, OSError) as error:
            logger.warning("cannot raise the open-file limit to %d: %s", target, error)
