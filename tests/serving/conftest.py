"""Serving-test fixtures: real `textrnn serve` subprocesses, real REST and gRPC clients.

Three servers start once per session, in parallel, over real exports of tiny
models (`sentiment` versions 1 and 2, and the same classifier again as
`classifier`):

- `server` (`servers["main"]`): batching off, small limits (64 KiB bodies,
  64 instances, 8 KiB header lines, 1 s to send a request's head, 2 s idle
  keep-alive), fast polling;
- `servers["batching"]`: `--enable-batching`, so concurrent requests merge;
- `servers["timeout"]`: a batch wait far longer than its request deadline, and
  `--no-playground`.

Every error test checks the answer's status and message, then that the
server still answers. The language model and translation exports (trained
here, tiny) are served by a fourth server in the tests marked slow.
"""

from __future__ import annotations

import shutil
import signal
from typing import Any

import pytest

from helpers import SentimentRun  # tests/helpers.py

from .helpers import (
    MAIN_SERVER_OPTIONS,
    Exports,
    ServerProcess,
    export_tiny_language_model,
    export_tiny_translation,
    http,
    start_server,
)


@pytest.fixture(scope="session")
def exports(sentiment_run: SentimentRun, tmp_path_factory: pytest.TempPathFactory) -> Exports:
    from textrnn import export

    base = tmp_path_factory.mktemp("served")
    export.export_run(sentiment_run.run_dir, base / "sentiment")
    export.export_run(sentiment_run.run_dir, base / "sentiment")
    shutil.copytree(base / "sentiment" / "1", base / "classifier" / "1")
    outside = tmp_path_factory.mktemp("outside")
    shutil.copytree(base / "sentiment" / "1", outside / "1")
    return Exports(base, outside, (), "")


@pytest.fixture(scope="session")
def task_exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    """Tiny language model and translation exports (slow tests only).

    They are <base>/lm/1 and <base>/translation/1.
    """
    base = tmp_path_factory.mktemp("tasks")
    tasks = []
    if export_tiny_language_model(base, tmp_path_factory.mktemp("lm")):
        tasks.append("lm")
    translation_error = export_tiny_translation(base, tmp_path_factory.mktemp("translation"))
    if translation_error is None:
        tasks.append("translation")
    return Exports(base, base, tuple(tasks), translation_error or "")


@pytest.fixture(scope="session")
def task_server(task_exports: Exports):
    """A server over the language model and translation exports."""
    if not task_exports.tasks:
        pytest.skip("neither the language model nor the translation task exports yet")
    server = start_server(task_exports.base, "--poll-seconds", "0").wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def task_in_process(task_exports: Exports) -> dict[str, Any]:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - registers its ops

    return {
        task: tf.saved_model.load(str(task_exports.base / task / "1"))
        for task in task_exports.tasks
    }


@pytest.fixture(scope="session")
def task_grpc(task_server: ServerProcess):
    grpc = pytest.importorskip("grpc")
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{task_server.grpc_port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), None
    channel.close()


@pytest.fixture(scope="session")
def servers(exports: Exports, tmp_path_factory: pytest.TempPathFactory):
    """The three servers, started at once (TensorFlow's import dominates start-up), stopped last."""
    main_base = tmp_path_factory.mktemp("main") / "models"
    shutil.copytree(exports.base, main_base)
    (main_base / "escape").symlink_to(exports.outside, target_is_directory=True)
    batching_base = tmp_path_factory.mktemp("batching") / "models"
    shutil.copytree(exports.base, batching_base)
    started = {
        "main": start_server(main_base, *MAIN_SERVER_OPTIONS),
        "batching": start_server(
            batching_base,
            "--enable-batching",
            "--max-batch-size",
            "16",
            "--batch-timeout-micros",
            "30000",
            "--poll-seconds",
            "0",
            "--tensorflow-intra-op-parallelism",
            "1",
        ),
        "timeout": start_server(
            exports.base,
            "--enable-batching",
            "--batch-timeout-micros",
            "2000000",
            "--max-batch-size",
            "64",
            "--request-timeout-ms",
            "100",
            "--poll-seconds",
            "0",
            "--grpc-port",
            "-1",
            "--no-playground",
        ),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():  # signal all first: they shut down in parallel
            if server.alive():
                server.process.send_signal(signal.SIGTERM)
        for server in started.values():
            server.stop()


@pytest.fixture
def server(servers: dict[str, ServerProcess]) -> ServerProcess:
    yield servers["main"]
    assert servers["main"].alive(), "the server died"
    assert http(servers["main"], "GET", "/v1/models/sentiment")[0] == 200, (
        "the server stopped answering"
    )


@pytest.fixture(scope="session")
def in_process(exports: Exports) -> dict[int, Any]:
    """The same exports loaded in this process: the reference outputs."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - registers its ops

    loaded = {v: tf.saved_model.load(str(exports.base / "sentiment" / str(v))) for v in (1, 2)}
    for task in exports.tasks:
        loaded[task] = tf.saved_model.load(str(exports.base / task / "1"))
    return loaded


@pytest.fixture(scope="session")
def grpc_stubs(servers: dict[str, ServerProcess]):
    grpc = pytest.importorskip("grpc")
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{servers['main'].grpc_port}")
    yield (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


@pytest.fixture
def lm_export(task_exports: Exports) -> str:
    if "lm" not in task_exports.tasks:
        pytest.skip("the language model task does not export yet")
    return "lm"


@pytest.fixture
def translation_export(task_exports: Exports) -> str:
    if task_exports.translation_error:
        pytest.fail(
            "the translation task exports, but the tiny export failed: "
            f"{task_exports.translation_error}"
        )
    if "translation" not in task_exports.tasks:
        pytest.skip("the translation task does not export yet")
    return "translation"
