"""`serving.server` and `textrnn serve`: start-up errors and the graceful stop."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .helpers import (
    TEXTS,
    Exports,
    predict,
    predict_request,
    start_server,
)


def test_cli_reports_a_missing_base_path_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from textrnn.cli.main import app

    result = CliRunner().invoke(
        app,
        [
            "serve",
            "--model-base-path",
            str(tmp_path / "nope"),
            "--rest-port",
            "0",
            "--grpc-port",
            "-1",
        ],
    )
    assert result.exit_code == 2
    assert "model base path not found" in result.output and "--model-base-path" in result.output


@pytest.mark.slow
def test_sigterm_answers_the_requests_in_flight_then_exits(exports: Exports, tmp_path) -> None:
    """Requests received before SIGTERM get their answers (REST and gRPC); then exit 0."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    base = tmp_path / "models"
    shutil.copytree(exports.base, base)
    # A batch waits 3 s for company: the requests below are in flight when SIGTERM comes.
    server = start_server(
        base,
        "--enable-batching",
        "--batch-timeout-micros",
        "3000000",
        "--no-batch-when-all-clients-wait",
        "--poll-seconds",
        "0",
    ).wait_ready()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        answers: dict[str, Any] = {}

        def rest(index: int) -> None:
            answers[f"rest-{index}"] = predict(server, {"instances": [TEXTS[index]]})[0]

        def grpc_call() -> None:
            try:
                stub.Predict(predict_request([TEXTS[0]]), timeout=60)
                answers["grpc"] = 200
            except grpc.RpcError as error:
                answers["grpc"] = error.code().name

        threads = [threading.Thread(target=rest, args=(i,)) for i in range(3)]
        threads.append(threading.Thread(target=grpc_call))
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # received, and waiting in the batch queue
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        assert answers == {"rest-0": 200, "rest-1": 200, "rest-2": 200, "grpc": 200}
        assert server.process.wait(60) == 0
        channel.close()
    finally:
        server.stop()
