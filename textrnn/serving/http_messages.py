"""Request bodies and JSON answers on aiohttp, with the REST API's limits and error bodies.

Every route reads its body with `read_body` (the body limit,
`Expect: 100-continue`, chunked bodies, stalled senders) and answers with
`json_answer`; failures are `ServingError`s, which `rest` answers as
`{"error": "..."}` with their status.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from textrnn.serving.errors import ServingError, first_line, invalid

# An oversized body up to this much over the limit is read and dropped before the 413
# (aiohttp's lingering read), so a client still sending gets the answer, not a reset.
DRAIN_BYTES = 8 * 1024 * 1024

_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


class RefusedRequestError(ServingError):
    """A request answered without reading (all of) its body: the connection closes after,
    unless `close` is False (the rest of the body is read and dropped first)."""

    def __init__(self, message: str, http_status: int, close: bool = True) -> None:
        super().__init__("INVALID_ARGUMENT", message, http_status=http_status)
        self.close = close


async def answer_and_close(request: web.BaseRequest, answer: web.StreamResponse) -> None:
    """Write `answer`, then close the connection at once: without aiohttp's lingering read
    of a body left unread (for a stalled, malformed or far too large one)."""
    answer.force_close()
    try:
        await answer.prepare(request)
        await answer.write_eof()
    except ConnectionError:
        pass  # the client has gone already
    request.protocol.force_close()  # type: ignore[union-attr]


def json_answer(status: int, payload: Any) -> web.Response:
    """An answer: a JSON body, or Prometheus text when `payload` is a str."""
    if isinstance(payload, str):
        return web.Response(
            status=status, body=payload.encode("utf-8"), headers={"Content-Type": PROMETHEUS_TEXT}
        )
    try:
        body = _JSON_ENCODER.encode(payload).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (echoed from a request): escape it
        body = json.dumps(payload, separators=(",", ":")).encode("ascii")
    return web.Response(status=status, body=body, content_type="application/json")


async def read_body(request: web.BaseRequest, limit: int, timeout: float) -> bytes:
    """The request's whole body (Content-Length or chunked), at most `limit` bytes.

    Raises `RefusedRequestError`: 413 over the limit (before reading it, when the
    length is declared), 411 for a POST that declares neither a length nor
    chunks, 408 when the client pauses longer than `timeout` seconds.
    """
    content = request.content
    if content.is_eof():  # all of it is here already (a small request): no waiting
        body = content.read_nowait(-1)
        if len(body) > limit:
            raise RefusedRequestError(_too_large(len(body), limit), 413, close=False)
        if body or request.method != "POST" or request.content_length is not None:
            return body
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if length is None and not chunked:
        if request.method == "POST":
            raise RefusedRequestError(
                "a POST needs a body with a Content-Length header (or chunked)", 411
            )
        return b""
    expects_continue = request.headers.get("Expect", "").lower() == "100-continue"
    if length is not None and length > limit:
        raise RefusedRequestError(
            _too_large(length, limit),
            413,
            close=expects_continue or length > limit + DRAIN_BYTES,
        )
    if expects_continue:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = bytearray()
    try:
        while True:
            chunk = await asyncio.wait_for(content.readany(), timeout)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > limit:
                raise RefusedRequestError(_too_large(len(body), limit, "at least "), 413)
    except asyncio.TimeoutError:
        raise RefusedRequestError(
            f"the request body stalled for {timeout:g} s (the server's --header-timeout-seconds)",
            408,
        ) from None
    except ConnectionError:
        raise
    except Exception as error:  # noqa: BLE001 - aiohttp's payload errors (bad chunks, EOF)
        raise RefusedRequestError(f"malformed request body: {first_line(error)}", 400) from None


def parse_json_body(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body)
    except RecursionError:
        raise invalid("JSON body nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid(f"JSON Parse error: {first_line(error)}") from None
    if type(request) is not dict:
        raise invalid("the request body must be a JSON object")
    return request


def _too_large(size: int, limit: int, qualifier: str = "") -> str:
    return (
        f"request body of {qualifier}{size} bytes exceeds the limit of {limit} bytes "
        "(the server's --max-body-bytes)"
    )
