"""`serving.http_server`: HTTP/1.1 over raw sockets, on either event loop.

Pipelining, malformed requests, limits, `Expect: 100-continue` and disconnects;
`test_hostile_clients.py` has the rest of what a hostile client can try.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from .helpers import (
    TEXTS,
    Exports,
    ServerProcess,
    http,
    post_bytes,
    predict,
    raw_exchange,
    reference,
)


def test_oversized_body_is_413_and_server_survives(server: ServerProcess) -> None:
    status, answer = predict(server, {"instances": ["x" * 70_000]})
    assert status == 413
    assert "exceeds the limit of 65536 bytes" in answer["error"]
    status, _ = predict(server, {"instances": ["small again"]})
    assert status == 200


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    bodies = [json.dumps({"instances": [text]}).encode() for text in TEXTS]
    data = b"".join(post_bytes(body, f"Content-Length: {len(body)}") for body in bodies)
    status_request = b"GET /v1/models/sentiment HTTP/1.1\r\nHost: x\r\n\r\n"
    answers, closed = raw_exchange(server, data + status_request, 5)
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 5
    singles = [predict(server, {"instances": [text]})[1] for text in TEXTS]
    assert [json.loads(a.split(b"\r\n\r\n", 1)[1]) for a in answers[:4]] == singles
    assert b"model_version_status" in answers[4] and not closed


@pytest.mark.parametrize(
    ("data", "status", "message", "closes"),
    [
        (b"BREW /pot HTCPCP/1.0\r\n\r\n", 400, "malformed HTTP request", True),
        (b"GET /v1/models/sentiment HTTP/1.1\r\nno colon here\r\n\r\n", 400, "header", True),
        (b"GET /v1/models/sentiment HTTP/1.1\r\n\r\n", 400, "Host", True),
        (post_bytes(b""), 411, "Content-Length", True),
        (post_bytes(b"{}", "Content-Length: -2"), 400, "Content-Length", True),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431, "exceeds 8192", True),
        (b"DELETE /v1/models/sentiment HTTP/1.1\r\nHost: x\r\n\r\n", 405, "use GET or POST", False),
        (post_bytes(b"{}", "Content-Length: 2", version="HTTP/1.0"), 400, "exactly one", True),
    ],
    ids=[
        "request-line",
        "header-line",
        "no-host",
        "no-length",
        "bad-length",
        "huge-head",
        "405",
        "http-1.0",
    ],
)
def test_malformed_http_is_answered_and_server_survives(
    server: ServerProcess, data: bytes, status: int, message: str, closes: bool
) -> None:
    answers, closed = raw_exchange(server, data)
    assert answers, "no answer"
    # aiohttp answers a request it could not parse as HTTP/1.0 (the version it can be sure of)
    assert re.match(rb"HTTP/1\.[01] %d " % status, answers[0]), answers[0][:200]
    assert message in json.loads(answers[0].split(b"\r\n\r\n", 1)[1])["error"]
    assert closed == closes


def test_expect_100_continue(server: ServerProcess) -> None:
    """curl sends `Expect: 100-continue` before larger bodies and waits for the go-ahead."""
    import socket

    body = json.dumps({"instances": ["a lovely film"] * 40}).encode()
    head = post_bytes(b"", f"Content-Length: {len(body)}", "Expect: 100-continue")
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as connection:
        connection.sendall(head)
        assert connection.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(body)
        answer = b""
        while b"]}" not in answer[-100:]:
            chunk = connection.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert len(json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"]) == 40


def test_oversized_body_with_expect_is_refused_before_it_is_sent(server: ServerProcess) -> None:
    answers, closed = raw_exchange(
        server, post_bytes(b"", "Content-Length: 10000000", "Expect: 100-continue")
    )
    assert answers[0].startswith(b"HTTP/1.1 413 ") and closed
    assert b"--max-body-bytes" in answers[0]


def test_half_sent_request_and_abrupt_disconnects_leave_the_server_serving(
    server: ServerProcess,
) -> None:
    import socket

    for data in (
        b"POST /v1/models/sentiment:predict HTTP/1.1\r\nContent-Le",
        post_bytes(b"{", "Content-Length: 500"),
    ):
        connection = socket.create_connection(("127.0.0.1", server.rest_port), timeout=30)
        connection.sendall(data)
        connection.close()
    connection = socket.create_connection(("127.0.0.1", server.rest_port), timeout=30)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    body = json.dumps({"instances": TEXTS}).encode()
    connection.sendall(post_bytes(body, f"Content-Length: {len(body)}"))
    connection.close()  # reset before the answer is written
    assert predict(server, {"instances": ["still here"]})[0] == 200


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_in_process_server_on_either_event_loop(
    exports: Exports, in_process: dict[int, Any], monkeypatch: pytest.MonkeyPatch, event_loop: str
) -> None:
    """The REST front end in process, on the standard library's loop (the fallback) and uvloop."""
    from textrnn.serving import Server, ServerOptions

    if event_loop == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv("TEXTRNN_EVENT_LOOP", event_loop)
    server = Server(
        ServerOptions(model_base_path=exports.base, rest_port=0, grpc_port=-1, poll_seconds=0),
        echo=lambda line: None,
    ).start()
    try:
        kind = type(server._http.loop).__module__.split(".")[0]
        assert kind == event_loop
        port = ServerProcess(None, exports.base, rest_port=server.rest_port)  # type: ignore[arg-type]
        status, answer = predict(port, {"instances": TEXTS})
        assert status == 200
        expected = reference(in_process, TEXTS)
        assert [p["label"] for p in answer["predictions"]] == [
            b.decode() for b in expected["label"]
        ]
        body = json.dumps({"instances": TEXTS[:1]}).encode()
        request = post_bytes(body, f"Content-Length: {len(body)}")
        answers, closed = raw_exchange(port, request * 3, 3)
        assert len(answers) == 3 and not closed
        assert http(port, "GET", "/v1/models/nope")[0] == 404
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(
            f"http://127.0.0.1:{server.rest_port}/v1/models/sentiment", timeout=5
        )
