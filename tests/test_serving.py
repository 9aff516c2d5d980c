"""`textrnn serve`: a real server in a subprocess, real REST and gRPC clients.

Three servers start once per session, in parallel, over real exports of tiny
models (`sentiment` versions 1 and 2, and the same classifier again as
`classifier`):

- `server`: batching off, small limits (64 KiB bodies, 64 instances), fast polling;
- `batching_server`: `--enable-batching`, so concurrent requests merge;
- `timeout_server`: a batch wait far longer than its request deadline.

Every error test checks the answer's status and message, then that the
server still answers. The language model and translation exports (trained
here, tiny) are served by a fourth server in the tests marked slow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PYTHON, REPO, SentimentRun, subprocess_env

READY_TIMEOUT = 180  # seconds to import TensorFlow, load and warm up (generous: shared CI machines)
TEXTS = ["a good film", "awful mess", "very bad movie", "great fun and a lovely story"]


# ----------------------------------------------------------------------------- server processes


@dataclass
class ServerProcess:
    """A `textrnn serve` subprocess and the ports it printed when ready."""

    process: subprocess.Popen
    base: Path
    lines: list[str] = field(default_factory=list)
    rest_port: int = 0
    grpc_port: int = 0
    _ready: threading.Event = field(default_factory=threading.Event)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("serving "):
                rest = re.search(r"REST http://127\.0\.0\.1:(\d+)/", line)
                grpc = re.search(r"gRPC 127\.0\.0\.1:(\d+)", line)
                self.rest_port = int(rest[1]) if rest else 0
                self.grpc_port = int(grpc[1]) if grpc else 0
                self._ready.set()
        self._ready.set()  # the process ended

    def wait_ready(self) -> ServerProcess:
        if not self._ready.wait(READY_TIMEOUT) or not self.rest_port:
            self.stop()
            stderr = self.process.stderr.read() if self.process.stderr else ""
            pytest.fail(f"textrnn serve did not start: {self.lines[-5:]} {stderr[-2000:]}")
        return self

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(base: Path, *options: str) -> ServerProcess:
    command = [
        PYTHON,
        "-m",
        "textrnn",
        "serve",
        "--model-base-path",
        str(base),
        "--rest-port",
        "0",
        "--grpc-port",
        "0",
        *options,
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = ServerProcess(process, base)
    threading.Thread(target=server._read, daemon=True).start()
    return server


TRANSLATION_PAIRS = [
    ("ein mann fährt rad .", "a man rides a bike ."),
    ("eine frau liest ein buch .", "a woman reads a book ."),
    ("zwei hunde spielen .", "two dogs play ."),
    ("ein kind lacht .", "a child laughs ."),
] * 8


def export_tiny_translation(base: Path, workdir: Path) -> str | None:
    """Train and export a tiny GRU encoder-decoder to `base/translation`.

    Returns None on success, "" when the task does not export yet, else the error.
    """
    try:
        from textrnn import translation
        from textrnn.config import TranslationConfig
    except ImportError:
        return ""
    if not hasattr(translation, "export_parts"):
        return ""
    from textrnn import export, training
    from textrnn.config import load_config

    source, target = workdir / "train.de", workdir / "train.en"
    source.write_text("".join(f"{s}\n" for s, _ in TRANSLATION_PAIRS), encoding="utf-8")
    target.write_text("".join(f"{t}\n" for _, t in TRANSLATION_PAIRS), encoding="utf-8")
    overrides = {
        "data.source": str(source),
        "data.target": str(target),
        "data.source_max_length": 8,
        "data.target_max_length": 8,
        "tokenizer.kind": "word",
        "tokenizer.vocabulary_size": 40,
        "model.embedding_dim": 8,
        "model.encoder.units": 8,
        "model.decoder.units": 8,
        "training.epochs": 1,
        "training.batch_size": 4,
        "training.seed": 5,
    }
    try:
        config = load_config(TranslationConfig, None, overrides)
        run_dir = workdir / "translation-run"
        training.train(
            translation, config, run_dir, restart=True, echo=lambda line: None, verbose=0
        )
        export.export_run(run_dir, base / "translation")
    except Exception as error:  # noqa: BLE001 - reported by the translation tests, not the fixture
        return f"{type(error).__name__}: {error}"
    return None


@dataclass(frozen=True)
class Exports:
    base: Path  # <base>/sentiment/{1,2}, <base>/classifier/1, <base>/lm/1 (when the task exports)
    outside: Path  # an export outside the base path (the target of a symlink inside it)
    tasks: tuple[str, ...]  # model names served besides the classifiers
    translation_error: str  # why the translation export is missing ("" if the task does not export)


LM_TEXT = "".join(f"the cat sat on the mat {i % 7}.\nto be or not to be.\n" for i in range(40))


def export_tiny_language_model(base: Path, workdir: Path) -> bool:
    """Train and export a tiny character LSTM language model to `base/lm`; False if the task cannot export."""
    try:
        from textrnn import language_model
        from textrnn.config import LanguageModelConfig
    except ImportError:
        return False
    if not hasattr(language_model, "export_parts"):
        return False
    from textrnn import export, training
    from textrnn.config import load_config

    train = workdir / "lm.txt"
    train.write_text(LM_TEXT, encoding="utf-8")
    overrides = {
        "data.train": str(train),
        "data.seq_len": 16,
        "model.embedding_dim": 8,
        "model.stack.units": 8,
        "training.epochs": 1,
        "training.batch_size": 4,
        "training.seed": 3,
        "training.jit_compile": "false",
    }
    config = load_config(LanguageModelConfig, None, overrides)
    run_dir = workdir / "lm-run"
    training.train(language_model, config, run_dir, restart=True, echo=lambda line: None, verbose=0)
    export.export_run(run_dir, base / "lm")
    return True


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
    """Tiny language model and translation exports (slow tests only): <base>/lm/1, <base>/translation/1."""
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
    """Start the three servers at once (TensorFlow's import dominates start-up) and stop them at the end."""
    main_base = tmp_path_factory.mktemp("main") / "models"
    shutil.copytree(exports.base, main_base)
    (main_base / "escape").symlink_to(exports.outside, target_is_directory=True)
    batching_base = tmp_path_factory.mktemp("batching") / "models"
    shutil.copytree(exports.base, batching_base)
    started = {
        "main": start_server(
            main_base, "--poll-seconds", "0.2", "--max-body-bytes", "65536", "--max-instances", "64"
        ),
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


# ----------------------------------------------------------------------------- clients


def http(
    server: ServerProcess,
    method: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """(status, parsed JSON answer) from the server's REST port."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}{path}", data=data, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def predict(
    server: ServerProcess,
    body: dict[str, Any],
    model: str = "sentiment",
    version: int | None = None,
):
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
    return http(server, "POST", path, body)


@pytest.fixture(scope="session")
def in_process(exports: Exports) -> dict[int, Any]:
    """The same exports loaded in this process: the reference outputs."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - registers its ops

    loaded = {v: tf.saved_model.load(str(exports.base / "sentiment" / str(v))) for v in (1, 2)}
    for task in exports.tasks:
        loaded[task] = tf.saved_model.load(str(exports.base / task / "1"))
    return loaded


def reference(
    in_process: dict[int, Any], texts: list[str], version: int = 2
) -> dict[str, np.ndarray]:
    import tensorflow as tf

    outputs = in_process[version].signatures["serving_default"](text=tf.constant(texts))
    return {key: value.numpy() for key, value in outputs.items()}


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


def predict_request(
    texts: Any,
    model: str = "sentiment",
    version: int | None = None,
    name: str = "text",
    signature: str = "",
):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[name].CopyFrom(tf.make_tensor_proto(texts))
    return request


# ----------------------------------------------------------------------------- status, metadata, warm-up


def test_startup_loads_every_model_and_replays_warmup(
    server: ServerProcess, exports: Exports
) -> None:
    text = "\n".join(server.lines)
    expected = [("sentiment", 1), ("sentiment", 2), ("classifier", 1)]
    expected += [(task, 1) for task in exports.tasks]
    for name, version in expected:
        assert re.search(
            rf"model {name} version {version}: loaded .* [1-9]\d* warm-up request\(s\) replayed",
            text,
        ), text
    assert "escape" not in re.findall(r"model (\S+) version", text)


def test_status_lists_versions_highest_first(server: ServerProcess) -> None:
    status, answer = http(server, "GET", "/v1/models/sentiment")
    assert status == 200
    assert answer == {
        "model_version_status": [
            {
                "version": v,
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for v in ("2", "1")
        ]
    }
    status, answer = http(server, "GET", "/v1/models/sentiment/versions/1")
    assert status == 200 and [s["version"] for s in answer["model_version_status"]] == ["1"]


def test_metadata_has_signature_defs(server: ServerProcess) -> None:
    status, answer = http(server, "GET", "/v1/models/sentiment/metadata")
    assert status == 200
    assert answer["model_spec"] == {"name": "sentiment", "signature_name": "", "version": "2"}
    signatures = answer["metadata"]["signature_def"]["signature_def"]
    default = signatures["serving_default"]
    assert default["inputs"]["text"]["dtype"] == "DT_STRING"
    assert default["inputs"]["text"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert {"label", "probability", "probabilities", "classes"} <= set(default["outputs"])
    assert set(signatures["classify"]["outputs"]) == {"classes", "scores"}
    status, answer = http(server, "GET", "/v1/models/sentiment/versions/1/metadata")
    assert status == 200 and answer["model_spec"]["version"] == "1"


# ----------------------------------------------------------------------------- predict and classify


def test_predict_row_format_equals_in_process(
    server: ServerProcess, in_process: dict[int, Any]
) -> None:
    status, answer = predict(server, {"signature_name": "serving_default", "instances": TEXTS})
    assert status == 200, answer
    expected = reference(in_process, TEXTS)
    assert [row["label"] for row in answer["predictions"]] == [
        b.decode() for b in expected["label"]
    ]
    np.testing.assert_allclose(
        [row["probabilities"] for row in answer["predictions"]],
        expected["probabilities"],
        rtol=1e-6,
    )
    assert answer["predictions"][0]["classes"] == [b.decode() for b in expected["classes"][0]]
    # Named instances are the same request.
    status, named = predict(server, {"instances": [{"text": t} for t in TEXTS]})
    assert status == 200 and named == answer


def test_predict_columnar_format_equals_in_process(
    server: ServerProcess, in_process: dict[int, Any]
) -> None:
    status, answer = predict(server, {"inputs": {"text": TEXTS}})
    assert status == 200, answer
    outputs = answer["outputs"]
    expected = reference(in_process, TEXTS)
    assert set(outputs) == {"label", "probability", "probabilities", "classes"}
    assert outputs["label"] == [b.decode() for b in expected["label"]]
    np.testing.assert_allclose(outputs["probability"], expected["probability"], rtol=1e-6)
    status, bare = predict(server, {"inputs": TEXTS})  # a single input may be given bare
    assert status == 200 and bare == answer


def test_predict_specific_version_and_second_model(
    server: ServerProcess, in_process: dict[int, Any]
) -> None:
    status, answer = predict(server, {"inputs": {"text": TEXTS[:2]}}, version=1)
    assert status == 200
    np.testing.assert_allclose(
        answer["outputs"]["probabilities"],
        reference(in_process, TEXTS[:2], 1)["probabilities"],
        rtol=1e-6,
    )
    status, other = predict(server, {"inputs": {"text": TEXTS[:2]}}, model="classifier")
    assert status == 200 and other == answer


def test_binary_string_inputs(server: ServerProcess) -> None:
    import base64

    encoded = {"b64": base64.b64encode(TEXTS[0].encode()).decode()}
    status, answer = predict(server, {"instances": [encoded]})
    assert status == 200
    assert answer == predict(server, {"instances": [TEXTS[0]]})[1]


def test_classify_rest(server: ServerProcess, in_process: dict[int, Any]) -> None:
    status, answer = http(
        server,
        "POST",
        "/v1/models/sentiment:classify",
        {"signature_name": "classify", "examples": [{"text": t} for t in TEXTS]},
    )
    assert status == 200, answer
    expected = reference(in_process, TEXTS)
    for row, probabilities in zip(answer["result"], expected["probabilities"], strict=True):
        assert [label for label, _ in row] == [b.decode() for b in expected["classes"][0]]
        np.testing.assert_allclose([score for _, score in row], probabilities, rtol=1e-6)
    # Without signature_name the classify signature is used (a single example: another batch size,
    # so compare with a float tolerance).
    status, default = http(
        server, "POST", "/v1/models/sentiment:classify", {"examples": [{"text": TEXTS[0]}]}
    )
    assert status == 200
    assert [label for label, _ in default["result"][0]] == [
        label for label, _ in answer["result"][0]
    ]
    np.testing.assert_allclose(
        [score for _, score in default["result"][0]],
        [score for _, score in answer["result"][0]],
        rtol=1e-6,
    )


GENERATION_KNOBS = {"max_tokens": 6, "temperature": 1.0, "top_k": 1, "top_p": 1.0, "seed": 5}


@pytest.fixture
def lm_export(task_exports: Exports) -> str:
    if "lm" not in task_exports.tasks:
        pytest.skip("the language model task does not export yet")
    return "lm"


def lm_reference(
    task_in_process: dict[Any, Any], signature: str, **inputs: Any
) -> dict[str, np.ndarray]:
    import tensorflow as tf

    function = task_in_process["lm"].signatures[signature]
    specs = function.structured_input_signature[1]
    tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()}
    return {key: value.numpy() for key, value in function(**tensors).items()}


@pytest.mark.slow
def test_language_model_generation_row_and_columnar(
    task_server: ServerProcess, lm_export: str, task_in_process: dict[Any, Any]
) -> None:
    prompts = ["the cat", "to be"]
    expected = lm_reference(task_in_process, "serving_default", prompt=prompts, **GENERATION_KNOBS)
    # Columnar: the knobs are scalars beside the batch of prompts.
    status, answer = predict(
        task_server, {"inputs": {"prompt": prompts, **GENERATION_KNOBS}}, model=lm_export
    )
    assert status == 200, answer
    assert answer["outputs"]["text"] == [t.decode() for t in expected["text"]]
    assert answer["outputs"]["num_tokens"] == expected["num_tokens"].tolist()
    # Row format: each instance repeats the (scalar) knobs.
    status, rows = predict(
        task_server,
        {"instances": [{"prompt": p, **GENERATION_KNOBS} for p in prompts]},
        model=lm_export,
    )
    assert status == 200, rows
    assert [r["text"] for r in rows["predictions"]] == answer["outputs"]["text"]
    # Knobs that differ between instances cannot be one scalar.
    status, error = predict(
        task_server,
        {
            "instances": [
                {"prompt": p, **GENERATION_KNOBS, "seed": i} for i, p in enumerate(prompts)
            ]
        },
        model=lm_export,
    )
    assert status == 400 and "'seed' is a scalar" in error["error"]
    status, error = predict(
        task_server,
        {"inputs": {"prompt": prompts, **GENERATION_KNOBS, "top_k": "one"}},
        model=lm_export,
    )
    assert status == 400 and "'top_k' expects int32" in error["error"]


@pytest.mark.slow
def test_language_model_score_signature(
    task_server: ServerProcess, lm_export: str, task_in_process: dict[Any, Any]
) -> None:
    texts = ["the cat sat", "to be or not"]
    status, answer = predict(
        task_server, {"signature_name": "score", "inputs": {"text": texts}}, model=lm_export
    )
    assert status == 200, answer
    expected = lm_reference(task_in_process, "score", text=texts)
    for key, value in expected.items():
        np.testing.assert_allclose(answer["outputs"][key], value, rtol=1e-5)


@pytest.mark.slow
def test_language_model_over_grpc(
    task_grpc: Any, lm_export: str, task_in_process: dict[Any, Any]
) -> None:
    import tensorflow as tf

    prediction, _ = task_grpc
    request = predict_request(["the cat"], model=lm_export, name="prompt")
    for key, value in GENERATION_KNOBS.items():
        dtype = {"max_tokens": tf.int32, "top_k": tf.int32, "seed": tf.int64}.get(key, tf.float32)
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    response = prediction.Predict(request, timeout=60)
    expected = lm_reference(
        task_in_process, "serving_default", prompt=["the cat"], **GENERATION_KNOBS
    )
    assert list(tf.make_ndarray(response.outputs["text"])) == list(expected["text"])


@pytest.fixture
def translation_export(task_exports: Exports) -> str:
    if task_exports.translation_error:
        pytest.fail(
            f"the translation task exports, but the tiny export failed: {task_exports.translation_error}"
        )
    if "translation" not in task_exports.tasks:
        pytest.skip("the translation task does not export yet")
    return "translation"


@pytest.mark.slow
def test_translation_row_and_columnar(
    task_server: ServerProcess, translation_export: str, task_in_process: dict[Any, Any]
) -> None:
    import tensorflow as tf

    sources = ["ein mann fährt rad .", "zwei hunde spielen ."]
    expected = {
        k: v.numpy()
        for k, v in task_in_process["translation"]
        .signatures["serving_default"](source=tf.constant(sources))
        .items()
    }
    status, rows = predict(task_server, {"instances": sources}, model=translation_export)
    assert status == 200, rows
    assert [r["translation"] for r in rows["predictions"]] == [
        t.decode() for t in expected["translation"]
    ]
    np.testing.assert_allclose(
        [r["score"] for r in rows["predictions"]], expected["score"], rtol=1e-5
    )
    knobs = {"beam_size": 2, "max_length": 6}
    status, columns = predict(
        task_server,
        {"signature_name": "translate", "inputs": {"source": sources, **knobs}},
        model=translation_export,
    )
    assert status == 200, columns
    reference_translate = task_in_process["translation"].signatures["translate"](
        source=tf.constant(sources), beam_size=tf.constant(2), max_length=tf.constant(6)
    )
    assert columns["outputs"]["translation"] == [
        t.decode() for t in reference_translate["translation"].numpy()
    ]


# ----------------------------------------------------------------------------- bad requests


BAD_REQUESTS = [
    # (id, method, path, body (dict, or bytes sent raw), status, fragment of the error message)
    (
        "malformed-json",
        "POST",
        "/v1/models/sentiment:predict",
        b'{"instances": [',
        400,
        "JSON Parse error",
    ),
    (
        "not-an-object",
        "POST",
        "/v1/models/sentiment:predict",
        b'["a"]',
        400,
        "must be a JSON object",
    ),
    (
        "wrong-input-name",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": [{"txt": "a"}]},
        400,
        "unknown input(s) 'txt'",
    ),
    (
        "wrong-input-name-columnar",
        "POST",
        "/v1/models/sentiment:predict",
        {"inputs": {"txt": ["a"]}},
        400,
        "missing input(s) 'text'",
    ),
    (
        "wrong-type",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": [1, 2]},
        400,
        "expects strings, got int",
    ),
    (
        "wrong-nested-type",
        "POST",
        "/v1/models/sentiment:predict",
        {"inputs": {"text": [["a"], ["b"]]}},
        400,
        "expects shape string [-1]",
    ),
    (
        "ragged",
        "POST",
        "/v1/models/sentiment:predict",
        {"inputs": {"text": [["a"], ["b", "c"]]}},
        400,
        "ragged",
    ),
    ("empty-batch", "POST", "/v1/models/sentiment:predict", {"instances": []}, 400, "empty batch"),
    (
        "empty-batch-columnar",
        "POST",
        "/v1/models/sentiment:predict",
        {"inputs": {"text": []}},
        400,
        "empty batch",
    ),
    (
        "both-formats",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": ["a"], "inputs": ["a"]},
        400,
        "exactly one of 'instances'",
    ),
    (
        "unknown-signature",
        "POST",
        "/v1/models/sentiment:predict",
        {"signature_name": "nope", "instances": ["a"]},
        400,
        'Serving signature name: "nope" not found',
    ),
    (
        "too-many-instances",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": ["a"] * 65},
        400,
        "too many instances: 65 > 64",
    ),
    (
        "bad-base64",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": [{"b64": "!!"}]},
        400,
        "not valid base64",
    ),
    (
        "unknown-model",
        "POST",
        "/v1/models/nope:predict",
        {"instances": ["a"]},
        404,
        "Servable not found for request: Latest(nope)",
    ),
    (
        "unknown-version",
        "POST",
        "/v1/models/sentiment/versions/7:predict",
        {"instances": ["a"]},
        404,
        "Servable not found for request: Specific(sentiment, 7)",
    ),
    (
        "unknown-model-status",
        "GET",
        "/v1/models/nope",
        None,
        404,
        "Could not find any versions of model nope",
    ),
    (
        "unknown-version-status",
        "GET",
        "/v1/models/sentiment/versions/7",
        None,
        404,
        "Could not find version 7",
    ),
    (
        "non-numeric-version",
        "GET",
        "/v1/models/sentiment/versions/x1",
        None,
        400,
        "Failed to convert version",
    ),
    (
        "traversal-encoded",
        "POST",
        "/v1/models/..%2F..%2Fetc%2Fpasswd:predict",
        {"instances": ["a"]},
        400,
        "invalid model name '../../etc/passwd'",
    ),
    ("traversal-dots", "GET", "/v1/models/../versions/1", None, 400, "invalid model name '..'"),
    (
        "traversal-metadata",
        "GET",
        "/v1/models/..%2Fsentiment/metadata",
        None,
        400,
        "invalid model name",
    ),
    (
        "symlink-outside-base",
        "GET",
        "/v1/models/escape",
        None,
        404,
        "Could not find any versions of model escape",
    ),
    (
        "malformed-path",
        "POST",
        "/v1/models/sentiment:explode",
        {"instances": ["a"]},
        400,
        "Malformed request",
    ),
    ("no-model-name", "GET", "/v1/models", None, 400, "Missing model name"),
    ("not-the-api", "GET", "/etc/passwd", None, 404, "no such endpoint"),
    (
        "regress",
        "POST",
        "/v1/models/sentiment:regress",
        {"examples": [{"text": "a"}]},
        501,
        "no regression",
    ),
    (
        "classify-not-a-list",
        "POST",
        "/v1/models/sentiment:classify",
        {"examples": "a"},
        400,
        "needs 'examples'",
    ),
    (
        "lone-surrogate",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": ["ok", "\ud800"]},
        400,
        "lone UTF-16 surrogate",
    ),
    (
        "lone-surrogate-columnar",
        "POST",
        "/v1/models/sentiment:predict",
        {"inputs": {"text": ["\udfff"]}},
        400,
        "lone UTF-16 surrogate",
    ),
    (
        "classify-lone-surrogate",
        "POST",
        "/v1/models/sentiment:classify",
        {"examples": [{"text": "\ud800"}]},
        400,
        "lone UTF-16 surrogate",
    ),
    (
        "classify-missing-feature",
        "POST",
        "/v1/models/sentiment:classify",
        {"examples": [{"zzz": "a"}]},
        400,
        "text",
    ),
    (
        "classify-wrong-feature-type",
        "POST",
        "/v1/models/sentiment:classify",
        {"examples": [{"text": 5}]},
        400,
        "text",
    ),
    (
        "unknown-signature-with-a-surrogate",
        "POST",
        "/v1/models/sentiment:predict",
        {"signature_name": "\ud800", "instances": ["a"]},
        400,
        "\ud800",
    ),
    (
        "classify-on-predict-signature",
        "POST",
        "/v1/models/sentiment:classify",
        {"signature_name": "nope", "examples": [{"text": "a"}]},
        400,
        "not found in signature def",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_is_answered_and_server_survives(
    server: ServerProcess, method: str, path: str, body: Any, status: int, message: str
) -> None:
    got, answer = http(
        server,
        method,
        path,
        raw=body if isinstance(body, bytes) else None,
        body=None if isinstance(body, bytes) else body,
    )
    assert got == status, answer
    assert set(answer) == {"error"} and message in answer["error"], answer


def test_oversized_body_is_413_and_server_survives(server: ServerProcess) -> None:
    status, answer = predict(server, {"instances": ["x" * 70_000]})
    assert status == 413
    assert "exceeds the limit of 65536 bytes" in answer["error"]
    status, _ = predict(server, {"instances": ["small again"]})
    assert status == 200


def test_many_bad_requests_in_a_row_leave_good_ones_working(server: ServerProcess) -> None:
    def one(index: int) -> int:
        if index % 2:
            return http(server, "POST", "/v1/models/sentiment:predict", raw=b"{nope")[0]
        return predict(server, {"instances": [TEXTS[index % len(TEXTS)]]})[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(40)))
    assert statuses == [200 if i % 2 == 0 else 400 for i in range(40)]


# ----------------------------------------------------------------------------- HTTP transport


def raw_exchange(server: ServerProcess, data: bytes, answers: int = 1) -> tuple[list[bytes], bool]:
    """Send `data` on one raw socket; read `answers` HTTP answers (head + body) and whether the
    server then closed the connection (within a short wait)."""
    import socket

    found: list[bytes] = []
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as connection:
        connection.sendall(data)
        buffer = b""
        closed = False
        while len(found) < answers:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = buffer[:end].decode("latin-1")
                length = int(re.search(r"Content-Length: (\d+)", head)[1])
                if len(buffer) >= end + 4 + length:
                    found.append(buffer[: end + 4 + length])
                    buffer = buffer[end + 4 + length :]
                    continue
            chunk = connection.recv(65536)
            if not chunk:
                closed = True
                break
            buffer += chunk
        if not closed:
            connection.settimeout(0.5)
            try:
                closed = connection.recv(1) == b""
            except TimeoutError:
                closed = False
    return found, closed


def post_bytes(body: bytes, *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"POST /v1/models/sentiment:predict {version}", "Host: x", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    bodies = [json.dumps({"instances": [text]}).encode() for text in TEXTS]
    data = b"".join(post_bytes(body, f"Content-Length: {len(body)}") for body in bodies)
    answers, closed = raw_exchange(server, data + b"GET /v1/models/sentiment HTTP/1.1\r\n\r\n", 5)
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 5
    singles = [predict(server, {"instances": [text]})[1] for text in TEXTS]
    assert [json.loads(a.split(b"\r\n\r\n", 1)[1]) for a in answers[:4]] == singles
    assert b"model_version_status" in answers[4] and not closed


@pytest.mark.parametrize(
    ("data", "status", "message", "closes"),
    [
        (b"BREW /pot HTCPCP/1.0\r\n\r\n", 400, "malformed HTTP request line", True),
        (b"GET /v1/models/sentiment HTTP/1.1\r\nno colon here\r\n\r\n", 400, "header", True),
        (post_bytes(b"{}", "Transfer-Encoding: chunked"), 411, "chunked", True),
        (post_bytes(b"{}"), 411, "Content-Length", True),
        (post_bytes(b"{}", "Content-Length: -2"), 400, "invalid Content-Length", True),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431, "exceed", True),
        (b"DELETE /v1/models/sentiment HTTP/1.1\r\n\r\n", 405, "use GET or POST", False),
        (post_bytes(b"{}", "Content-Length: 2", version="HTTP/1.0"), 400, "exactly one", True),
    ],
    ids=[
        "request-line",
        "header-line",
        "chunked",
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
    assert answers[0].startswith(f"HTTP/1.1 {status} ".encode()), answers[0][:200]
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


# ----------------------------------------------------------------------------- versions


def test_version_dropped_in_is_served_without_restart(
    server: ServerProcess, in_process: dict[int, Any]
) -> None:
    model = server.base / "sentiment"
    staging = server.base / ".staging-3"  # outside any model directory's version list until renamed
    shutil.copytree(model / "1", staging)
    os.rename(staging, model / "3")  # atomic, as `textrnn sentiment export` does
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, answer = http(server, "GET", "/v1/models/sentiment/metadata")
            if answer.get("model_spec", {}).get("version") == "3":
                break
            time.sleep(0.2)
        assert answer["model_spec"]["version"] == "3", answer
        status, answer = predict(
            server, {"inputs": {"text": TEXTS[:2]}}
        )  # default: the highest version
        assert status == 200
        np.testing.assert_allclose(
            answer["outputs"]["probabilities"],
            reference(in_process, TEXTS[:2], 1)["probabilities"],
            rtol=1e-6,
        )
        status, answer = http(server, "GET", "/v1/models/sentiment")
        assert [s["version"] for s in answer["model_version_status"]] == ["3", "2", "1"]
    finally:
        shutil.rmtree(model / "3")
    deadline = time.monotonic() + 20
    while (
        time.monotonic() < deadline and predict(server, {"instances": ["a"]}, version=3)[0] != 404
    ):
        time.sleep(0.2)
    assert predict(server, {"instances": ["a"]}, version=3)[0] == 404
    assert http(server, "GET", "/v1/models/sentiment/metadata")[1]["model_spec"]["version"] == "2"
    # Like TensorFlow Serving, an unloaded version stays in the status as END.
    states = {
        s["version"]: s["state"]
        for s in http(server, "GET", "/v1/models/sentiment")[1]["model_version_status"]
    }
    assert states == {"3": "END", "2": "AVAILABLE", "1": "AVAILABLE"}


# ----------------------------------------------------------------------------- gRPC


def test_grpc_predict_equals_in_process(grpc_stubs: Any, in_process: dict[int, Any]) -> None:
    import tensorflow as tf

    prediction, _ = grpc_stubs
    response = prediction.Predict(predict_request(TEXTS), timeout=30)
    assert response.model_spec.name == "sentiment" and response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    outputs = {key: tf.make_ndarray(value) for key, value in response.outputs.items()}
    expected = reference(in_process, TEXTS)
    assert list(outputs["label"]) == list(expected["label"])
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)
    filtered = prediction.Predict(predict_request(TEXTS[:1], version=1), timeout=30)
    assert filtered.model_spec.version.value == 1


def test_grpc_output_filter(grpc_stubs: Any) -> None:
    prediction, _ = grpc_stubs
    request = predict_request(TEXTS[:1])
    request.output_filter.append("label")
    assert set(prediction.Predict(request, timeout=30).outputs) == {"label"}


def test_grpc_metadata_and_status(grpc_stubs: Any) -> None:
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    prediction, model_service = grpc_stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "sentiment"
    response = prediction.GetModelMetadata(request, timeout=30)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_defs)
    assert {"serving_default", "classify"} <= set(signature_defs.signature_def)
    assert response.model_spec.version.value == 2
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "sentiment"
    statuses = model_service.GetModelStatus(status_request, timeout=30).model_version_status
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [s.version for s in statuses if s.state == available] == [2, 1]
    import grpc

    status_request.model_spec.version_label = "stable"  # refused, as Predict refuses it
    with pytest.raises(grpc.RpcError) as raised:
        model_service.GetModelStatus(status_request, timeout=30)
    assert raised.value.code().name == "UNIMPLEMENTED"


def test_grpc_classify(grpc_stubs: Any, in_process: dict[int, Any]) -> None:
    from tensorflow_serving.apis import classification_pb2

    prediction, _ = grpc_stubs
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "sentiment"
    request.model_spec.signature_name = "classify"
    for text in TEXTS:
        example = request.input.example_list.examples.add()
        example.features.feature["text"].bytes_list.value.append(text.encode())
    response = prediction.Classify(request, timeout=30)
    expected = reference(in_process, TEXTS)
    scores = [[c.score for c in row.classes] for row in response.result.classifications]
    np.testing.assert_allclose(scores, expected["probabilities"], rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"model": "nope"}, "NOT_FOUND", "Servable not found for request: Latest(nope)"),
        ({"version": 9}, "NOT_FOUND", "Specific(sentiment, 9)"),
        ({"model": "../etc"}, "INVALID_ARGUMENT", "invalid model name"),
        ({"name": "txt"}, "INVALID_ARGUMENT", "unknown input(s) 'txt'"),
        ({"texts": [1.5]}, "INVALID_ARGUMENT", "expects string, got float32"),
        ({"texts": [["a"]]}, "INVALID_ARGUMENT", "expects shape string [-1]"),
        ({"texts": np.array([], dtype=object)}, "INVALID_ARGUMENT", "empty batch"),
        ({"signature": "nope"}, "INVALID_ARGUMENT", 'Serving signature name: "nope" not found'),
        ({"no_strings": True}, "INVALID_ARGUMENT", "holds no string_val"),
    ],
    ids=[
        "unknown-model",
        "unknown-version",
        "traversal",
        "wrong-name",
        "wrong-type",
        "wrong-shape",
        "empty",
        "signature",
        "string-tensor-without-strings",
    ],
)
def test_grpc_errors(grpc_stubs: Any, kwargs: dict[str, Any], code: str, message: str) -> None:
    import grpc

    prediction, _ = grpc_stubs
    texts = kwargs.pop("texts", ["a"])
    request = predict_request(texts, **{k: v for k, v in kwargs.items() if k != "no_strings"})
    if kwargs.get("no_strings"):  # DT_STRING, shape [1], but a float where the string belongs
        del request.inputs["text"].string_val[:]
        request.inputs["text"].float_val.append(1.0)
    with pytest.raises(grpc.RpcError) as raised:
        prediction.Predict(request, timeout=30)
    assert raised.value.code().name == code
    assert message in raised.value.details()
    assert prediction.Predict(predict_request(["still alive"]), timeout=30).outputs["label"]


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


# ----------------------------------------------------------------------------- batching and deadlines


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


def test_batch_shared_json_equals_per_request_json() -> None:
    """Merged requests convert the batch's outputs once; each slice must read as if alone."""
    from textrnn.serving import BatchOutputs, outputs_json, predictions_json

    batch = {
        "label": np.array([b"pos", b"neg", b"\xff\xfe", "caf\u00e9".encode()], dtype=object),
        "probabilities": np.array(
            [[0.1, 0.9], [np.nan, np.inf], [0.5, 0.5], [1.0, 0.0]], np.float32
        ),
        "classes": np.array([[b"a", b"b"]] * 4, dtype=object),
        "ids": np.arange(12, dtype=np.int64).reshape(4, 3),
    }
    shared = BatchOutputs(batch)
    for start, end in [(0, 1), (1, 3), (3, 4), (0, 4)]:
        alone = {name: value[start:end] for name, value in batch.items()}
        piece = shared.rows(start, end)
        assert json.dumps(predictions_json(piece, end - start)) == json.dumps(
            predictions_json(alone, end - start)
        )
        assert json.dumps(outputs_json(piece)) == json.dumps(outputs_json(alone))
        np.testing.assert_array_equal(piece["ids"], alone["ids"])  # gRPC reads the arrays
    single = BatchOutputs({"probability": batch["probabilities"][:, 0]})
    assert json.dumps(predictions_json(single.rows(1, 3), 2)) == json.dumps(
        predictions_json({"probability": batch["probabilities"][1:3, 0]}, 2)
    )


def test_batching_keeps_a_bad_request_alone(servers: dict[str, ServerProcess]) -> None:
    server = servers["batching"]
    bodies = [{"instances": ["fine"]}, {"instances": [3]}, {"instances": ["fine too"]}] * 4
    with ThreadPoolExecutor(12) as pool:
        statuses = [s for s, _ in pool.map(lambda body: predict(server, body), bodies)]
    assert statuses == [200, 400, 200] * 4


def test_request_deadline_is_504_and_server_survives(servers: dict[str, ServerProcess]) -> None:
    server = servers["timeout"]  # waits 2 s for a batch to fill, but answers within 100 ms
    status, answer = predict(server, {"instances": ["slow"]})
    assert status == 504
    assert "Deadline exceeded" in answer["error"]
    assert http(server, "GET", "/v1/models/sentiment")[0] == 200
    assert server.alive()


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


# ----------------------------------------------------------------------------- CLI and library


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


def test_defaults_bind_loopback_and_validate() -> None:
    from textrnn.serving import ServerOptions

    assert ServerOptions().host == "127.0.0.1"
    with pytest.raises(ValueError, match="--max-batch-size"):
        ServerOptions(max_batch_size=0)
    with pytest.raises(ValueError, match="--model-name"):
        ServerOptions(model_name="../x")
    with pytest.raises(ValueError, match="--tensorflow-intra-op-parallelism"):
        ServerOptions(tensorflow_intra_op_parallelism=-1)


def test_single_model_directory_is_served_under_its_name(exports: Exports) -> None:
    from textrnn.serving import Registry, ServerOptions

    options = ServerOptions(model_base_path=exports.base / "sentiment", poll_seconds=0)
    assert Registry(options, executor=None).discover() == {"sentiment": exports.base / "sentiment"}  # type: ignore[arg-type]


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_in_process_server_on_either_event_loop(
    exports: Exports, in_process: dict[int, Any], monkeypatch: pytest.MonkeyPatch, event_loop: str
) -> None:
    """The REST front end on the standard library's loop (the fallback) and on uvloop, in process."""
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
