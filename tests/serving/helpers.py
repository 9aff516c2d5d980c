"""Shared serving-test helpers: `textrnn serve` subprocesses, tiny task exports, clients.

Fixtures built on them live in `conftest.py` beside this module.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import PYTHON, REPO, subprocess_env  # tests/helpers.py, not this module

READY_TIMEOUT = 180  # seconds to import TensorFlow, load and warm up (generous: shared CI machines)
TEXTS = ["a good film", "awful mess", "very bad movie", "great fun and a lovely story"]
# The `server` fixture's limits (the hostile-client tests rely on the short timeouts).
HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
MAIN_SERVER_OPTIONS = (
    "--poll-seconds",
    "0.2",
    "--max-body-bytes",
    "65536",
    "--max-instances",
    "64",
    "--max-header-bytes",
    "8192",
    "--header-timeout-seconds",
    str(HEADER_TIMEOUT),
    "--idle-timeout-seconds",
    str(IDLE_TIMEOUT),
)


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

    Returns None on success, else the error (the translation tests report it).
    """
    from textrnn import export, translation
    from textrnn.config import load_config
    from textrnn.training.fit import train
    from textrnn.translation.config import TranslationConfig

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
        train(translation.TASK, config, run_dir, restart=True, echo=lambda line: None, verbose=0)
        export.export_run(run_dir, base / "translation")
    except Exception as error:  # noqa: BLE001 - reported by the translation tests, not the fixture
        return f"{type(error).__name__}: {error}"
    return None


@dataclass(frozen=True)
class Exports:
    base: Path  # <base>/sentiment/{1,2}, <base>/classifier/1, <base>/lm/1 (when the task exports)
    outside: Path  # an export outside the base path (the target of a symlink inside it)
    tasks: tuple[str, ...]  # model names served besides the classifiers
    translation_error: str  # why the translation export is missing ("" when it is there)


LM_TEXT = "".join(f"the cat sat on the mat {i % 7}.\nto be or not to be.\n" for i in range(40))


def export_tiny_language_model(base: Path, workdir: Path) -> bool:
    """Train and export a tiny character LSTM language model to `base/lm`; True when done."""
    from textrnn import export, language_model
    from textrnn.config import load_config
    from textrnn.language_model.config import LanguageModelConfig
    from textrnn.training.fit import train

    text = workdir / "lm.txt"
    text.write_text(LM_TEXT, encoding="utf-8")
    overrides = {
        "data.train": str(text),
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
    train(language_model.TASK, config, run_dir, restart=True, echo=lambda line: None, verbose=0)
    export.export_run(run_dir, base / "lm")
    return True


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


def reference(
    in_process: dict[int, Any], texts: list[str], version: int = 2
) -> dict[str, np.ndarray]:
    import tensorflow as tf

    outputs = in_process[version].signatures["serving_default"](text=tf.constant(texts))
    return {key: value.numpy() for key, value in outputs.items()}


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


GENERATION_KNOBS = {"max_tokens": 6, "temperature": 1.0, "top_k": 1, "top_p": 1.0, "seed": 5}


def lm_reference(
    task_in_process: dict[Any, Any], signature: str, **inputs: Any
) -> dict[str, np.ndarray]:
    import tensorflow as tf

    function = task_in_process["lm"].signatures[signature]
    specs = function.structured_input_signature[1]
    tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()}
    return {key: value.numpy() for key, value in function(**tensors).items()}


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
                length = int(re.search(r"(?i)Content-Length: (\d+)", head)[1])
                if len(buffer) >= end + 4 + length:
                    found.append(buffer[: end + 4 + length])
                    buffer = buffer[end + 4 + length :]
                    continue
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                chunk = b""
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
            except ConnectionResetError:
                closed = True
    return found, closed


def post_bytes(body: bytes, *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"POST /v1/models/sentiment:predict {version}", "Host: x", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class StreamedEvent:
    arrived: float  # seconds after the request was sent
    kind: str  # "message" (a piece), "done" or "error"
    data: dict[str, Any]


def stream_events(
    server: ServerProcess, body: Any, model: str = "lm", timeout: float = 60
) -> tuple[int, list[StreamedEvent] | dict[str, Any]]:
    """POST `:generate_stream` and read its server-sent events as they arrive:
    (200, events with arrival times) or (status, the JSON error answer)."""
    import http.client
    import time

    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=timeout)
    try:
        started = time.perf_counter()
        connection.request(
            "POST",
            f"/v1/models/{model}:generate_stream",
            json.dumps(body),
            {"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        if response.status != 200:
            return response.status, json.loads(response.read())
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        events, kind, data = [], "message", []
        for raw in response:  # one line at a time, as the chunks arrive
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                arrived = time.perf_counter() - started
                events.append(StreamedEvent(arrived, kind, json.loads("\n".join(data))))
                kind, data = "message", []
        return 200, events
    finally:
        connection.close()


def prometheus_counters(server: ServerProcess) -> dict[str, float]:
    """The server's /monitoring/prometheus/metrics as {name: value}."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return {
        name: float(value)
        for name, value in (line.split() for line in text.splitlines() if not line.startswith("#"))
    }
