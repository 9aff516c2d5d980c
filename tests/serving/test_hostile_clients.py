"""What a hostile (or broken) client can try on the REST port, over raw sockets.

Each test runs against the real `textrnn serve` process of the `server`
fixture (1 s to send a request's head, 2 s idle keep-alive, 8 KiB header
lines), which checks afterwards that the server is alive and still answers.
The heavy ones (1,000 idle connections, the connection cap) are marked slow
and run against a server of their own.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest

from .helpers import (
    HEADER_TIMEOUT,
    TEXTS,
    Exports,
    ServerProcess,
    http,
    post_bytes,
    predict,
    raw_exchange,
    start_server,
)

BODY = json.dumps({"instances": TEXTS[:1]}).encode()
# Longest a test waits for the server to act on a timeout (generous: a shared, loaded machine).
PATIENCE = 30


def status_of(answer: bytes) -> int:
    found = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert found, answer[:200]
    return int(found[1])


def error_of(answer: bytes) -> str:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.rest_port), timeout=PATIENCE)


def closed_by_server(connection: socket.socket) -> bool:
    """Read until the server closes (True) or `PATIENCE` runs out (False)."""
    connection.settimeout(PATIENCE)
    try:
        while connection.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


# ------------------------------------------------------------------ the table


def test_two_content_lengths_are_400(server: ServerProcess) -> None:
    """RFC 9112 6.3: conflicting lengths are an error (a request-smuggling vector)."""
    answers, closed = raw_exchange(
        server, post_bytes(BODY, "Content-Length: 5", "Content-Length: 50")
    )
    assert status_of(answers[0]) == 400 and "Content-Length" in error_of(answers[0])
    assert closed


def test_a_1_mb_header_line_is_431_every_time(server: ServerProcess) -> None:
    """The client is still sending when the answer comes: it must get it, not a reset."""
    data = (
        b"GET /v1/models/sentiment HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    )
    for _ in range(5):
        with connect(server) as connection:
            sender = threading.Thread(target=_send_ignoring_resets, args=(connection, data))
            sender.start()
            answer = b""
            try:
                while chunk := connection.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass
            sender.join(PATIENCE)
        assert status_of(answer) == 431, answer[:200]
        assert "--max-header-bytes" in error_of(answer)


def _send_ignoring_resets(connection: socket.socket, data: bytes) -> None:
    try:
        connection.sendall(data)
    except OSError:
        pass  # the server answered and closed before taking it all


def test_nul_byte_in_a_header_value_is_400(server: ServerProcess) -> None:
    answers, closed = raw_exchange(
        server, b"GET /v1/models/sentiment HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"
    )
    assert status_of(answers[0]) == 400 and closed


def test_lf_only_line_endings_are_answered_not_hung(server: ServerProcess) -> None:
    answers, closed = raw_exchange(server, b"GET /v1/models/sentiment HTTP/1.1\nHost: x\n\n")
    assert answers, "no answer"
    assert status_of(answers[0]) in (200, 400)


def test_half_request_lines_are_closed_after_the_header_timeout(server: ServerProcess) -> None:
    """500 connections that send half a request line and stop (slowloris)."""
    connections = [connect(server) for _ in range(500)]
    try:
        for connection in connections:
            connection.sendall(b"POST /v1/mod")
        assert predict(server, {"instances": ["others are served meanwhile"]})[0] == 200
        still_open = [c for c in connections if not closed_by_server(c)]
        assert not still_open, f"{len(still_open)} of 500 still open after {PATIENCE} s"
    finally:
        for connection in connections:
            connection.close()


def test_a_trickling_head_is_cut_off_by_the_header_timeout(server: ServerProcess) -> None:
    """Sending a byte at a time does not keep the header timer from running out."""
    with connect(server) as connection:
        head = b"GET /v1/models/sentiment HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        deadline = time.monotonic() + HEADER_TIMEOUT * 10
        closed = False
        for byte in head:
            try:
                connection.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(HEADER_TIMEOUT / 5)
            if time.monotonic() > deadline:
                break
        assert closed or closed_by_server(connection)


def test_chunked_body_is_accepted(server: ServerProcess) -> None:
    body = json.dumps({"instances": TEXTS}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]))
    answers, closed = raw_exchange(
        server, post_bytes(chunks + b"0\r\n\r\n", "Transfer-Encoding: chunked")
    )
    assert status_of(answers[0]) == 200 and not closed
    expected = predict(server, {"instances": TEXTS})[1]
    assert json.loads(answers[0].split(b"\r\n\r\n", 1)[1]) == expected


def test_chunked_body_over_the_limit_is_413(server: ServerProcess) -> None:
    chunk = b"x" * 40_000
    data = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2)) + b"0\r\n\r\n"
    answers, closed = raw_exchange(server, post_bytes(data, "Transfer-Encoding: chunked"))
    assert status_of(answers[0]) == 413 and "--max-body-bytes" in error_of(answers[0])


# ------------------------------------------------------------- what passed before, kept


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400, "malformed"),
        (b"GET /v1/models/..%2F..%2Fetc HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid model name"),
        (b"GET /v1/models/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400, ""),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: a\r\n" % i for i in range(10_000))
            + b"\r\n",
            431,
            "header lines",
        ),
        (post_bytes(b"[" * 50_000, "Content-Length: 50000"), 400, "nested too deeply"),
        (post_bytes(b'{"instances": [NaN]}', "Content-Length: 20"), 400, "expects strings"),
        (post_bytes(b"{}", "Content-Length: 2", "Expect: teapot"), 400, "exactly one"),
    ],
    ids=["tls-hello", "traversal", "non-utf8-path", "10000-headers", "deep-json", "nan", "expect"],
)
def test_bad_requests_are_answered(
    server: ServerProcess, data: bytes, status: int, message: str
) -> None:
    answers, _ = raw_exchange(server, data)
    assert answers, "no answer"
    assert status_of(answers[0]) == status, answers[0][:300]
    assert message in error_of(answers[0])


# --------------------------------------------------------- slow readers and writers


def test_slow_writer_within_the_timeouts_is_answered(server: ServerProcess) -> None:
    """Head and body in small pieces, each pause well inside the header timeout."""
    data = post_bytes(BODY, f"Content-Length: {len(BODY)}")
    with connect(server) as connection:
        for start in range(0, len(data), 16):
            connection.sendall(data[start : start + 16])
            time.sleep(HEADER_TIMEOUT / 40)
        answer = connection.recv(65536)
    assert status_of(answer) == 200


def test_a_stalled_body_is_408_and_closed(server: ServerProcess) -> None:
    with connect(server) as connection:
        connection.sendall(post_bytes(BODY[:5], f"Content-Length: {len(BODY)}"))
        answer = connection.recv(65536)
        assert status_of(answer) == 408 and "--header-timeout-seconds" in error_of(answer)
        assert closed_by_server(connection)


def test_slow_reader_gets_every_pipelined_answer(server: ServerProcess) -> None:
    """A client that sends 20 large requests and reads nothing for a while: its answers wait
    in the buffers, others are served meanwhile, and it gets them all in order."""
    body = json.dumps({"instances": [text * 10 for text in TEXTS] * 16}).encode()
    request = post_bytes(body, f"Content-Length: {len(body)}")
    with connect(server) as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sender = threading.Thread(target=_send_ignoring_resets, args=(connection, request * 20))
        sender.start()
        time.sleep(1.0)
        assert predict(server, {"instances": ["meanwhile"]})[0] == 200
        buffer = b""
        answers = 0
        while answers < 20:
            chunk = connection.recv(65536)
            assert chunk, f"closed after {answers} answers"
            buffer += chunk
            while (end := buffer.find(b"\r\n\r\n")) >= 0:
                length = int(re.search(rb"(?i)content-length: (\d+)", buffer[:end])[1])
                if len(buffer) < end + 4 + length:
                    break
                assert status_of(buffer) == 200
                buffer = buffer[end + 4 + length :]
                answers += 1
        sender.join(PATIENCE)


def test_disconnects_mid_request_and_mid_answer_leave_the_server_serving(
    server: ServerProcess,
) -> None:
    big = json.dumps({"instances": [text * 50 for text in TEXTS] * 16}).encode()
    for data, read in (
        (b"POST /v1/models/sentiment:predict HTTP/1.1\r\nHost: x\r\nContent-Le", 0),
        (post_bytes(big[:100], f"Content-Length: {len(big)}"), 0),
        (post_bytes(big, f"Content-Length: {len(big)}"), 0),  # gone before the answer
        (post_bytes(big, f"Content-Length: {len(big)}"), 1000),  # gone in the middle of it
    ):
        connection = connect(server)
        connection.sendall(data)
        if read:
            assert connection.recv(read)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        connection.close()  # a reset
    assert predict(server, {"instances": ["still here"]})[0] == 200


def test_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    with connect(server) as connection:
        for _ in range(2):  # kept alive between requests
            connection.sendall(b"GET /v1/models/sentiment HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(connection.recv(65536)) == 200
        assert closed_by_server(connection)  # after --idle-timeout-seconds


# ------------------------------------------------------------------------- heavy ones


@pytest.fixture(scope="module")
def roomy_server(exports: Exports):
    """A server of its own with room for 1,050 connections and long timeouts."""
    server = start_server(
        exports.base,
        "--poll-seconds",
        "0",
        "--grpc-port",
        "-1",
        "--max-connections",
        "1050",
        "--idle-timeout-seconds",
        "120",
        "--header-timeout-seconds",
        "120",
    ).wait_ready()
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)  # includes starting its own server on a loaded machine
def test_1000_idle_connections_and_the_connection_cap(roomy_server: ServerProcess) -> None:
    """1,000 idle connections leave others served; past --max-connections, 503 and closed."""
    connections = []
    try:
        for _ in range(1000):
            connections.append(connect(roomy_server))
        half = connections[::2]
        for connection in half:  # half of them: an unfinished head, the rest: nothing at all
            connection.sendall(b"GET /v1/models/sentiment HTTP/1.1\r\n")
        assert predict(roomy_server, {"instances": TEXTS})[0] == 200
        extra = [connect(roomy_server) for _ in range(60)]
        connections += extra
        refused = 0
        for connection in extra:
            connection.sendall(b"GET /v1/models/sentiment HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = connection.recv(65536)
            if answer and status_of(answer) == 503:
                assert "--max-connections" in error_of(answer)
                assert closed_by_server(connection)
                refused += 1
        assert refused >= 9  # 1,060 (+ the predict's, since closed) > 1,050
    finally:
        for connection in connections:
            connection.close()
    assert http(roomy_server, "GET", "/v1/models/sentiment")[0] == 200
    assert roomy_server.alive()
