"""`serving.batching`: concurrent requests merged into one model call.

Each request gets its own rows back, a bad request fails alone, and a batch
runs early when no more requests can come.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .helpers import (
    TEXTS,
    ServerProcess,
    http,
    predict,
    reference,
)


def metrics(server: ServerProcess) -> dict[str, int]:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics", timeout=30
    ) as r:
        text = r.read().decode()
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^textrnn_serving_(\w+)_total (\d+)$", text, re.M)
    }


def test_batching_merges_concurrent_requests(
    servers: dict[str, ServerProcess], in_process: dict[int, Any]
) -> None:
    server = servers["batching"]
    before = metrics(server)
    texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(32)]

    def one(text: str) -> Any:
        status, answer = predict(server, {"instances": [text]})
        assert status == 200, answer
        return answer["predictions"][0]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, texts))
    after = metrics(server)
    expected = reference(in_process, texts)
    assert [a["label"] for a in answers] == [b.decode() for b in expected["label"]]
    np.testing.assert_allclose(
        [a["probabilities"] for a in answers], expected["probabilities"], rtol=1e-5
    )
    calls = after["model_calls"] - before["model_calls"]
    rows = after["batched_rows"] - before["batched_rows"]
    assert rows == 32 and calls < 32, (calls, rows)  # requests were merged
    assert http(server, "GET", "/v1/models/sentiment")[0] == 200


def test_batching_merges_multi_row_and_columnar_requests(
    servers: dict[str, ServerProcess], in_process: dict[int, Any]
) -> None:
    """Requests of 1-3 rows in both formats, merged: each gets exactly its own rows back."""
    server = servers["batching"]
    before = metrics(server)
    requests = [
        [TEXTS[(i + j) % len(TEXTS)] + f" {i}" for j in range(1 + i % 3)] for i in range(24)
    ]

    def one(i: int) -> Any:
        body = {"instances": requests[i]} if i % 2 else {"inputs": {"text": requests[i]}}
        status, answer = predict(server, body)
        assert status == 200, answer
        return answer

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(one, range(len(requests))))
    for i, (texts, answer) in enumerate(zip(requests, answers, strict=True)):
        expected = reference(in_process, texts)
        if i % 2:
            rows = answer["predictions"]
            assert [r["label"] for r in rows] == [b.decode() for b in expected["label"]]
            assert [r["classes"] for r in rows] == [
                [c.decode() for c in row] for row in expected["classes"]
            ]
            np.testing.assert_allclose(
                [r["probabilities"] for r in rows], expected["probabilities"], rtol=1e-5
            )
        else:
            columns = answer["outputs"]
            assert columns["label"] == [b.decode() for b in expected["label"]]
            np.testing.assert_allclose(columns["probability"], expected["probability"], rtol=1e-5)
            np.testing.assert_allclose(
                columns["probabilities"], expected["probabilities"], rtol=1e-5
            )
    after = metrics(server)
    assert after["model_calls"] - before["model_calls"] < len(requests)  # some were merged


def test_batching_keeps_a_bad_request_alone(servers: dict[str, ServerProcess]) -> None:
    server = servers["batching"]
    bodies = [{"instances": ["fine"]}, {"instances": [3]}, {"instances": ["fine too"]}] * 4
    with ThreadPoolExecutor(12) as pool:
        statuses = [s for s, _ in pool.map(lambda body: predict(server, body), bodies)]
    assert statuses == [200, 400, 200] * 4


def test_batch_runs_early_when_every_keep_alive_client_waits(
    servers: dict[str, ServerProcess],
) -> None:
    """The timeout server waits 2 s for a batch (deadline 100 ms). A first request on a new
    connection waits (504): its client may connect per request. Once that connection has been
    answered, it is a keep-alive client; when it is the only one and waits, nothing else can
    come, so its batch runs at once instead of waiting out the timeout."""
    import http.client

    server = servers["timeout"]
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    body = json.dumps({"instances": ["a keep-alive client"]})
    try:
        statuses = []
        for _ in range(3):
            connection.request("POST", "/v1/models/sentiment:predict", body)
            response = connection.getresponse()
            statuses.append((response.status, json.loads(response.read())))
    finally:
        connection.close()
    assert statuses[0][0] == 504, statuses[0]
    assert [s for s, _ in statuses[1:]] == [200, 200], statuses
    assert statuses[1][1]["predictions"][0]["label"] in ("0", "1")
    # With a second keep-alive connection open and idle, the wait is back.
    idle = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    busy = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        for c in (idle, busy):  # answered once each (504): both are keep-alive clients now
            c.request("POST", "/v1/models/sentiment:predict", body)
            assert c.getresponse().read()
        busy.request("POST", "/v1/models/sentiment:predict", body)
        assert busy.getresponse().status == 504
    finally:
        idle.close()
        busy.close()
