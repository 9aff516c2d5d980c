"""`:generate_stream`: generated text as server-sent events (serving/streaming.py,
serving/stream_rows.py, serving/sse.py).

Over a real server (`task_server`: the tiny language model and translation
exports) and, for merged rows, older exports' paths and the deadline, the
streaming core in process over the same export. All slow: they need the
language model export.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import pytest

from .helpers import (
    Exports,
    ServerProcess,
    http,
    lm_reference,
    prometheus_counters,
    stream_events,
)

pytestmark = pytest.mark.slow

KNOBS = {"max_tokens": 120, "temperature": 0.8, "top_k": 0, "top_p": 0.95}


def _predicted_text(task_in_process: dict[str, Any], prompt: str, **knobs: Any) -> str:
    """What `:predict` on `generate` answers (the same signature, in this process)."""
    outputs = lm_reference(task_in_process, "generate", prompt=[prompt], **knobs)
    return outputs["text"][0].decode("utf-8")


def test_stream_arrives_piece_by_piece_and_equals_predict(
    task_server: ServerProcess, task_in_process, lm_export
):
    # A short stream first: the first one in a process traces the sampler (~2 s here).
    assert stream_events(task_server, {"prompt": "the", "max_tokens": 2})[0] == 200
    body = {"prompt": "the cat", **KNOBS, "seed": 11}
    status, events = stream_events(task_server, body)
    assert status == 200, events
    *pieces, done = events
    assert done.kind == "done" and all(e.kind == "message" for e in pieces)
    streamed = "".join(e.data["text"] for e in pieces)
    assert streamed == done.data["text"]
    assert done.data["tokens"] >= len(pieces) > 3 and done.data["seed"] == 11
    # The same text as :predict on `generate`, over HTTP and in process, for that seed.
    status, answer = http(
        task_server,
        "POST",
        "/v1/models/lm:predict",
        {"signature_name": "generate", "inputs": {"prompt": ["the cat"], **KNOBS, "seed": 11}},
    )
    assert status == 200, answer
    assert streamed == answer["outputs"]["text"][0]
    assert streamed == _predicted_text(task_in_process, "the cat", **KNOBS, seed=11)
    assert [e.arrived for e in events] == sorted(e.arrived for e in events)
    # Incremental: the first piece came long before the whole text was done (a ratio of
    # the stream's own arrival times, not a wall-clock threshold). Merged chunks make 120
    # tokens of the tiny model take little longer than reading the prompt: a longer stream.
    status, events = stream_events(
        task_server, {"prompt": "the cat", **KNOBS, "seed": 11, "max_tokens": 2000}
    )
    assert status == 200 and events[-1].kind == "done", events
    assert events[-1].data["text"].startswith(streamed)
    assert events[0].arrived < 0.5 * events[-1].arrived


def test_bad_knobs_are_a_400_before_anything_streams(task_server: ServerProcess, lm_export):
    cases = [
        ({"max_tokens": 5}, "missing 'prompt'"),
        ({"prompt": ["a"]}, "'prompt' must be a string"),
        ({"prompt": "a", "top_p": 0}, "'top_p' must be in (0, 1]"),
        ({"prompt": "a", "temperature": -1}, "'temperature' must be a finite number >= 0"),
        ({"prompt": "a", "top_k": 100000}, "'top_k' must be in [0,"),
        ({"prompt": "a", "max_tokens": 10**7}, "'max_tokens' must be in [0,"),
        ({"prompt": "a", "max_tokens": "5"}, "'max_tokens' must be an integer"),
        ({"prompt": "a", "beam": 2}, "unknown field(s) 'beam'"),
    ]
    for body, needle in cases:
        status, answer = stream_events(task_server, body)
        assert status == 400, (body, answer)
        assert needle in answer["error"], (body, answer)
    status, answer = stream_events(task_server, {"prompt": "a"}, model="nope")
    assert status == 404 and "nope" in answer["error"]
    if (task_server.base / "translation").is_dir():
        status, answer = stream_events(task_server, {"prompt": "a"}, model="translation")
        assert status == 400 and "cannot stream" in answer["error"], answer
    assert http(task_server, "GET", "/v1/models/lm")[0] == 200  # still serving


def test_a_client_that_leaves_frees_the_work(task_server: ServerProcess, lm_export):
    before = prometheus_counters(task_server)
    body = json.dumps({"prompt": "the", "max_tokens": 10000, "seed": 3}).encode()
    with socket.create_connection(("127.0.0.1", task_server.rest_port), timeout=60) as client:
        client.sendall(
            b"POST /v1/models/lm:generate_stream HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"data:" not in received:  # the headers, then the first piece
            chunk = client.recv(4096)
            assert chunk, received
            received += chunk
        assert b" 200 " in received.split(b"\r\n", 1)[0]
    # Gone after one piece of 10,000: its worker stops (counted as cancelled, not done).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counters = prometheus_counters(task_server)
        if counters["textrnn_serving_streams_active"] == 0:
            break
        time.sleep(0.1)
    assert counters["textrnn_serving_streams_active"] == 0
    cancelled = "textrnn_serving_streams_cancelled_total"
    assert counters[cancelled] == before.get(cancelled, 0) + 1
    calls = counters["textrnn_serving_model_calls_total"]
    assert calls - before["textrnn_serving_model_calls_total"] < 10000  # it stopped early
    assert prometheus_counters(task_server)["textrnn_serving_model_calls_total"] == calls


def test_32_concurrent_streams_finish_and_other_requests_answer(
    task_server: ServerProcess, task_in_process, lm_export
):
    results: dict[int, Any] = {}

    def one(seed: int) -> None:
        results[seed] = stream_events(task_server, {"prompt": "to be", **KNOBS, "seed": seed})

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(32)]
    for thread in threads:
        thread.start()
    # Meanwhile the server answers other requests (model calls run off the event loop).
    assert http(task_server, "GET", "/v1/models/lm")[0] == 200
    status, answer = http(
        task_server,
        "POST",
        "/v1/models/lm:predict",
        {"signature_name": "generate", "inputs": {"prompt": ["to be"], **KNOBS, "seed": 0}},
    )
    assert status == 200, answer
    for thread in threads:
        thread.join(300)
    assert sorted(results) == list(range(32))
    for status, events in results.values():
        assert status == 200, events
        assert events[-1].kind == "done", events[-1]
        assert [e for e in events if e.kind == "error"] == []
    for seed in (0, 17, 31):
        expected = _predicted_text(task_in_process, "to be", **KNOBS, seed=seed)
        assert results[seed][1][-1].data["text"] == expected
    assert results[0][1][-1].data["text"] == answer["outputs"]["text"][0]


# ----------------------------------------------------------------------------- in process


@pytest.fixture(scope="module")
def lm_servable(task_exports: Exports):
    """The language model export loaded in this process and warmed up as the server does at
    load (XLA compiles each batch size of `generate_rows`), once for this module's tests."""
    from textrnn.serving.execution import replay_warmup
    from textrnn.serving.servable import Servable

    if "lm" not in task_exports.tasks:
        pytest.skip("the language model task does not export yet")

    servable = Servable("lm", 1, task_exports.base / "lm" / "1")
    replay_warmup(servable)
    return servable


def _stream_in_process(
    servable,
    body: dict[str, Any],
    count: int = 1,
    without: tuple[str, ...] = (),
    max_rows: int = 0,
    **options: Any,
):
    """Run `count` streams of `body` (seeds 0..count-1) through a new `Streamer` in this
    process: [(texts, final event or the raised ServingError)], and the counters. `without`:
    signatures hidden meanwhile (as in older exports); `max_rows`: fewer rows per merged call
    than the export's."""
    from textrnn.serving.errors import ServingError
    from textrnn.serving.execution import Executor
    from textrnn.serving.metrics import Stats
    from textrnn.serving.options import ServerOptions
    from textrnn.serving.streaming import Streamer

    server_options = ServerOptions(**options)
    stats = Stats()
    executor = Executor(server_options, stats)
    streamer = Streamer(executor, server_options, stats)
    hidden = {name: servable.signatures.pop(name) for name in without}
    if max_rows:
        streamer._scheduler(servable, {}).max_rows = max_rows

    async def one(seed: int):
        stream = streamer.open(servable, {**body, "seed": seed})
        pieces = []
        try:
            while (event := await stream.next_event()) is not None:
                if event.kind == "piece":
                    pieces.append(event.data["text"])
                else:
                    return "".join(pieces), event
        except ServingError as error:
            return "".join(pieces), error

    async def run_all():
        return await asyncio.gather(*(one(seed) for seed in range(count)))

    try:
        results = asyncio.run(run_all())
    finally:
        streamer.shutdown(wait=True)  # every worker has finished its bookkeeping
        executor.shutdown()
        servable.signatures.update(hidden)
        servable.unload()  # its batchers (counting into this run's `stats`), not the model
    return results, stats


def test_concurrent_streams_run_as_rows_of_one_call(lm_servable, task_in_process):
    # Eight streams, at most three rows a call: the others wait their turn, then join.
    results, stats = _stream_in_process(
        lm_servable, {"prompt": "the cat", **KNOBS}, count=8, max_rows=3
    )
    for seed, (text, done) in enumerate(results):
        assert done.kind == "done" and text == done.data["text"]
        assert text == _predicted_text(task_in_process, "the cat", **KNOBS, seed=seed)
    assert 1 < stats.merged_requests / stats.model_calls <= 3  # prime and generate_rows calls
    assert stats.streams_active == 0 and stats.streams == 8


def test_rows_whose_window_moves_equal_predict(lm_servable, task_in_process, monkeypatch):
    # A window of 4 ids: each row sends only its last few ids as `previous`, and the windows
    # due to move are detokenized in one call; every text is still `:predict`'s.
    from textrnn.decoding import stream_text

    monkeypatch.setattr(stream_text, "DEFAULT_WINDOW", 4)
    moves = []
    move = stream_text.StreamText.move
    monkeypatch.setattr(
        stream_text.StreamText, "move", lambda self, text: moves.append(move(self, text))
    )
    results, _ = _stream_in_process(
        lm_servable, {"prompt": "the cat", **KNOBS}, count=6, max_rows=4
    )
    for seed, (text, done) in enumerate(results):
        assert done.kind == "done" and text == done.data["text"]
        assert text == _predicted_text(task_in_process, "the cat", **KNOBS, seed=seed)
    assert len(moves) >= 6 and any(moves)


@pytest.mark.parametrize(
    "hidden",
    [("prime", "generate_rows"), ("prime", "generate_rows", "generate_chunk")],
    ids=["generate_chunk", "step"],
)
def test_older_exports_stream_alike(lm_servable, task_in_process, hidden):
    # Exports from before `generate_rows` stream through `generate_chunk`, older ones through
    # `step`, whose per-token calls of several streams merge with batching on.
    results, stats = _stream_in_process(
        lm_servable,
        {"prompt": "the cat", **KNOBS},
        count=4,
        without=hidden,
        enable_batching=True,
        max_batch_size=4,
        batch_timeout_micros=5000,
    )
    for seed, (text, done) in enumerate(results):
        assert done.kind == "done" and text == done.data["text"]
        assert text == _predicted_text(task_in_process, "the cat", **KNOBS, seed=seed)
    if "generate_chunk" in hidden:
        assert stats.merged_requests > stats.model_calls  # step calls of several streams merged


def test_a_stream_ends_at_the_request_timeout(lm_servable):
    from textrnn.serving.errors import ServingError

    # The test model writes 10,000 tokens in about 0.3 s here (163 merged calls of up to 64
    # tokens), so the deadline sits far below that: a stream that outran it would be a
    # machine 15 times faster, not a missed deadline.
    [(text, error)], stats = _stream_in_process(
        lm_servable,
        {"prompt": "the", "max_tokens": 10000},
        request_timeout_ms=20,
    )
    assert isinstance(error, ServingError) and error.http_status == 504, error
    assert "--request-timeout-ms" in error.message
    assert stats.streams_active == 0 and stats.streams_cancelled == 0
