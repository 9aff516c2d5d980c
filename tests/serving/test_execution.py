"""`serving.execution`: the request deadline."""

from __future__ import annotations

from .helpers import (
    ServerProcess,
    http,
    predict,
)


def test_request_deadline_is_504_and_server_survives(servers: dict[str, ServerProcess]) -> None:
    server = servers["timeout"]  # waits 2 s for a batch to fill, but answers within 100 ms
    status, answer = predict(server, {"instances": ["slow"]})
    assert status == 504
    assert "Deadline exceeded" in answer["error"]
    assert http(server, "GET", "/v1/models/sentiment")[0] == 200
    assert server.alive()
