"""A TensorFlow-Serving-compatible model server: REST and gRPC, batching, hot versions.

`textrnn serve` serves every SavedModel under a base path laid out as
TensorFlow Serving expects (`<base>/<model>/<version>/saved_model.pb`; a base
path that is itself one model's directory serves that model alone). Clients
written for TensorFlow Serving work unchanged:

- REST: `GET /v1/models/{name}[/versions/{v}]` (status),
  `GET .../metadata` (signature definitions),
  `POST /v1/models/{name}[/versions/{v}]:predict` with `signature_name` and
  either `instances` (row format, answered with `predictions`) or `inputs`
  (columnar format, answered with `outputs`), and `:classify` with
  `examples` (answered with `result`); errors are `{"error": "..."}` with
  TensorFlow Serving's status codes (400 bad request, 404 unknown model or
  version, 413 body too large, 504 deadline exceeded).
- gRPC: `PredictionService` (`Predict`, `Classify`, `GetModelMetadata`) and
  `ModelService.GetModelStatus`, from the `tensorflow-serving-api` protos.

Design, for low per-request overhead: each loaded version keeps its
signatures as ready concrete functions with their input specs resolved once;
a request is decoded straight into NumPy arrays checked against those specs,
and the model is called once (or once per merged batch with
`enable_batching`, where concurrent compatible requests are concatenated,
run as one call and split again, like TensorFlow Serving's batching). A
poller thread loads new versions (and warm-up requests from
`assets.extra/tf_serving_warmup_requests`) in the background and publishes
a version only once it answers; removed versions are unloaded. The server
never reads outside the base path and binds to 127.0.0.1 unless told.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TensorFlow Serving's limit
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
VERSION = re.compile(r"\d{1,18}")
# TensorFlow Serving's REST paths (case-insensitive, as its handler matches them).
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/([^/:]+))?:(predict|classify|regress)", re.I
)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/([^/:]+))?(/metadata)?", re.I)
METRICS_PATH = "/monitoring/prometheus/metrics"
# `:predict` bodies up to this size are decoded on the REST event loop; larger ones on a thread.
INLINE_BODY_BYTES = 64 * 1024

# gRPC status code name -> HTTP status, as TensorFlow Serving's http_server.cc maps them.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "DEADLINE_EXCEEDED": 504,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
    "UNKNOWN": 500,
}


class ServingError(Exception):
    """A request failed; `code` is a gRPC status name, `http_status` its REST status."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or HTTP_STATUS.get(code, 500)


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    if text.startswith("Graph execution error"):
        return graph_error_message(text)[:500]
    line = text.splitlines()[0] if text else type(error).__name__
    return line[:500]


def graph_error_message(text: str) -> str:
    """The failing op's own message in TensorFlow's "Graph execution error:" text.

    That text is a header, then "Detected at node ... defined at" and the Python
    trace of where the node was built (indented; "<stack traces unavailable>" in a
    loaded SavedModel), then the message, then the node's name after a tab. An
    assertion's message is its first bracketed part: "assertion failed: [beam_size
    must be >= 1] [Condition ...".
    """
    for line in text.splitlines()[1:]:
        if (
            not line.strip()
            or line.startswith((" ", "\t", "Detected at node"))
            or line == "<stack traces unavailable>"  # a loaded SavedModel has no Python trace
        ):
            continue
        message = line.split("\t [[")[0].strip()
        found = re.match(r"assertion failed: \[(.*?)\]", message)
        return found[1] if found else message
    return "Graph execution error"


@dataclass
class ServerOptions:
    """Everything `textrnn serve` can set; defaults follow TensorFlow Serving where it has one."""

    model_base_path: Path = Path("saved_models")
    model_name: str | None = None  # when the base path is one model's directory; default: its name
    host: str = "127.0.0.1"
    rest_port: int = 8501  # 0: any free port; -1: no REST server
    grpc_port: int = 8500  # 0: any free port; -1: no gRPC server
    enable_batching: bool = False
    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 2
    # Run a batch before its timeout when no more requests can come: every REST connection
    # has sent one and waits for its answer (and no other caller is waiting). Not in
    # TensorFlow Serving; it spares closed-loop clients the wait.
    batch_when_all_clients_wait: bool = True
    max_body_bytes: int = 16 * 1024 * 1024
    max_instances: int = 10_000
    request_timeout_ms: int = 30_000
    poll_seconds: float = 1.0  # 0 disables polling for new versions
    num_workers: int = 8  # concurrent model calls without batching
    # TensorFlow's thread pools (TensorFlow Serving's --tensorflow_intra_op_parallelism /
    # --tensorflow_inter_op_parallelism); 0: TensorFlow's default (one thread per core).
    # Set by `serve()` before the first model loads: they are fixed per process.
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (
            ("max_batch_size", 1),
            ("num_batch_threads", 1),
            ("max_body_bytes", 1),
            ("max_instances", 1),
            ("request_timeout_ms", 1),
            ("num_workers", 1),
            ("batch_timeout_micros", 0),
            ("tensorflow_intra_op_parallelism", 0),
            ("tensorflow_inter_op_parallelism", 0),
        ):
            if getattr(self, name) < minimum:
                option = "--" + name.replace("_", "-")
                raise ValueError(f"{option} must be >= {minimum}, got {getattr(self, name)}")
        for name in ("rest_port", "grpc_port"):
            if not -1 <= getattr(self, name) <= 65535:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a port (0 = any free port, -1 = off)"
                )
        if self.poll_seconds < 0:
            raise ValueError("--poll-seconds must be >= 0")
        if self.model_name is not None and not valid_model_name(self.model_name):
            raise ValueError(
                f"--model-name {self.model_name!r} may only hold letters, digits, '_', '.', '-'"
            )


def valid_model_name(name: str) -> bool:
    return bool(MODEL_NAME.fullmatch(name)) and ".." not in name


# ----------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class TensorSpecInfo:
    """A signature input or output, resolved once at load."""

    name: str
    dtype: Any  # tf.DType
    shape: tuple[int | None, ...] | None  # None: unknown rank
    is_string: bool = field(init=False)
    batched: bool = field(init=False)  # batch-major: the first dimension is the batch

    def __post_init__(self) -> None:
        # Read on every request: computed once here, not as properties.
        object.__setattr__(self, "is_string", self.dtype.name == "string")
        object.__setattr__(self, "batched", bool(self.shape) and self.shape[0] is None)

    def describe(self) -> str:
        dims = (
            "?"
            if self.shape is None
            else "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"
        )
        return f"{self.dtype.name} {dims}"


class Signature:
    """One serving signature of a loaded version: a concrete function plus its specs."""

    def __init__(self, name: str, function: Any) -> None:
        import tensorflow as tf

        self.name = name
        self.function = function
        _, keyword_specs = function.structured_input_signature
        self.inputs = {
            key: TensorSpecInfo(
                key, spec.dtype, None if spec.shape.rank is None else tuple(spec.shape.as_list())
            )
            for key, spec in sorted(keyword_specs.items())
        }
        outputs = function.structured_outputs
        if not isinstance(outputs, dict):
            outputs = {"output_0": outputs}
        self.outputs = {
            key: TensorSpecInfo(
                key, spec.dtype, None if spec.shape.rank is None else tuple(spec.shape.as_list())
            )
            for key, spec in sorted(outputs.items())
        }
        # Merging requests needs every input and output to be batch-major.
        self.batchable = (
            bool(self.inputs)
            and all(s.batched for s in self.inputs.values())
            and all(s.batched for s in self.outputs.values())
        )
        self._constant = tf.constant
        self._invalid_argument = tf.errors.InvalidArgumentError
        self._op_error = tf.errors.OpError

    def check(self, arrays: dict[str, np.ndarray]) -> int:
        """Validate names, dtypes and shapes; return the batch size (rows)."""
        if arrays.keys() != self.inputs.keys():
            missing = sorted(self.inputs.keys() - arrays.keys())
            unknown = sorted(arrays.keys() - self.inputs.keys())
            parts = []
            if missing:
                parts.append("missing input(s) " + ", ".join(repr(m) for m in missing))
            if unknown:
                parts.append("unknown input(s) " + ", ".join(repr(u) for u in unknown))
            raise invalid(
                f"{'; '.join(parts)} for signature {self.name!r}; it takes "
                + ", ".join(f"{k!r} ({s.describe()})" for k, s in self.inputs.items())
            )
        rows = None
        for key, array in arrays.items():
            spec = self.inputs[key]
            if spec.shape is not None:
                if array.ndim != len(spec.shape) or any(
                    want is not None and want != got
                    for want, got in zip(spec.shape, array.shape, strict=True)
                ):
                    raise invalid(
                        f"input {key!r} of signature {self.name!r} expects shape {spec.describe()}, "
                        f"got {list(array.shape)}"
                    )
            if array.ndim and rows is None:
                rows = array.shape[0]
        return 1 if rows is None else rows

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the model once; TensorFlow's argument errors become INVALID_ARGUMENT."""
        try:
            tensors = {
                key: self._constant(value, dtype=self.inputs[key].dtype)
                for key, value in arrays.items()
            }
            result = self.function(**tensors)
        except self._invalid_argument as error:
            raise invalid(f"signature {self.name!r}: {first_line(error)}") from None
        except (TypeError, ValueError) as error:
            raise invalid(f"signature {self.name!r}: {first_line(error)}") from None
        except self._op_error as error:
            raise ServingError(
                "INTERNAL", f"signature {self.name!r}: {first_line(error)}"
            ) from None
        if not isinstance(result, dict):
            result = {"output_0": result}
        return {key: value.numpy() for key, value in result.items()}


# ----------------------------------------------------------------------------- batching


class BatchOutputs:
    """The outputs of one merged model call, shared by the requests it answers.

    Each request gets a `RowSlice` of it. Answers in JSON convert the whole
    batch once (one `tolist` per output) and slice the lists, instead of
    converting every request's arrays on its own.
    """

    __slots__ = ("arrays", "_columns", "_rows")

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self._columns: dict[str, list[Any]] | None = None
        self._rows: list[dict[str, Any]] | None = None

    def rows(self, start: int, end: int) -> RowSlice:
        result = RowSlice({name: value[start:end] for name, value in self.arrays.items()})
        result.batch, result.start, result.end = self, start, end
        return result

    def json_columns(self) -> dict[str, list[Any]]:
        """Output name -> one JSON value per row of the batch (computed once)."""
        if self._columns is None:
            self._columns = {name: array_to_json(v, name) for name, v in self.arrays.items()}
        return self._columns

    def json_rows(self) -> list[Any]:
        """One JSON row per row of the batch: the value (one output) or an object of outputs."""
        if self._rows is None:
            self._rows = rows_json(self.json_columns())
        return self._rows


class RowSlice(dict):
    """One request's rows of a merged batch: output name -> array, plus where they came from."""

    batch: BatchOutputs
    start: int
    end: int


class _Task(concurrent.futures.Future):
    """One request waiting in a `Batcher`: a future for its outputs."""

    def __init__(self, arrays: dict[str, np.ndarray], rows: int, key: tuple) -> None:
        super().__init__()
        self.arrays = arrays
        self.rows = rows
        self.key = key
        self.enqueued = 0.0  # time.monotonic() when queued


class _LoopTask:
    """One request waiting in a `Batcher` on behalf of the REST event loop.

    A lean stand-in for `_Task`'s future: one object per request (no condition
    variable, callback list, closures or timer of its own), answered on the
    loop through `_Completions`, which also expires it. The batch thread calls
    `set_running_or_notify_cancel` and `set_result` / `set_exception`; the
    loop calls `deliver` (done) or `expire` (deadline), whichever comes first.
    """

    __slots__ = (
        "arrays",
        "rows",
        "key",
        "_state",
        "result",
        "error",
        "callback",
        "_completions",
        "_expired",
        "enqueued",
    )
    _lock = threading.Lock()  # pending -> running or cancelled, between batch thread and loop
    PENDING, RUNNING, CANCELLED = 0, 1, 2

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        rows: int,
        key: tuple,
        completions: _Completions,
        callback: Any,
        expired: Any,
    ) -> None:
        self.arrays, self.rows, self.key = arrays, rows, key
        self._state = self.PENDING
        self.result: Any = None
        self.error: BaseException | None = None
        self.callback = callback  # callback(outputs, error) on the loop; None once answered
        self._completions = completions
        self._expired = expired

    # -- batch thread
    def set_running_or_notify_cancel(self) -> bool:
        with self._lock:
            if self._state != self.PENDING:
                return False
            self._state = self.RUNNING
            return True

    def set_result(self, result: Any) -> None:
        self.result = result
        self._completions.push(self.deliver)

    @staticmethod
    def deliver_all(tasks: list[_LoopTask]) -> None:
        """Hand finished tasks (their `result` set) to their loops in one go.

        The whole batch is answered in one pass of the loop, so no client of
        it can send again while others still wait for answers already computed
        (which would make `Executor.all_waiting` run a part-batch early).
        """
        by_loop: dict[int, list[_LoopTask]] = {}
        for task in tasks:
            by_loop.setdefault(id(task._completions), []).append(task)
        for group in by_loop.values():
            group[0]._completions.push_many([task.deliver for task in group])

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self._completions.push(self.deliver)

    # -- event loop
    def deliver(self) -> None:
        callback = self.callback
        if callback is None:
            return  # the deadline answered first
        self.callback = None
        result, error = self.result, self.error
        # The deadline queue may hold the task a while longer: let go of its data.
        self.arrays = self.result = self.error = None
        callback(result, error)

    def expire(self) -> None:
        callback = self.callback
        if callback is None:
            return
        self.callback = None
        with self._lock:
            if self._state == self.PENDING:
                self._state = self.CANCELLED  # never run
        callback(None, self._expired())


class Batcher:
    """Merges concurrent requests for one signature into one model call.

    A request waits at most `timeout` seconds for others; a batch runs when it
    holds `max_batch_size` rows, when the oldest request's wait is over, or
    when `all_waiting()` says no other request can come meanwhile. Only
    requests whose inputs share inner shapes are merged. If a merged call
    fails, each request is rerun alone, so one bad request fails alone.
    """

    def __init__(
        self,
        signature: Signature,
        max_batch_size: int,
        timeout: float,
        threads: int,
        stats: Stats,
        all_waiting: Any = None,
    ) -> None:
        self.signature = signature
        self.max_batch_size = max_batch_size
        self.timeout = timeout
        self.stats = stats
        # all_waiting(): True when no further request can arrive before an answer goes out,
        # so waiting out the timeout would only add latency.
        self._all_waiting = all_waiting
        self._queue: deque[_Task] = deque()
        self._rows = 0
        self._condition = threading.Condition()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"batch-{signature.name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, arrays: dict[str, np.ndarray], rows: int, loop_task: Any = None
    ) -> _Task | _LoopTask:
        """Queue a request: a `_Task` future, or `loop_task(key)` (a `_LoopTask`) if given."""
        key = tuple((name, array.shape[1:]) for name, array in arrays.items())
        task = _Task(arrays, rows, key) if loop_task is None else loop_task(key)
        task.enqueued = time.monotonic()
        with self._condition:
            if self._stopped:
                raise ServingError("UNAVAILABLE", "this model version is being unloaded; retry")
            self._queue.append(task)
            self._rows += rows
            # Wake a batch thread only when there is news for it: a first request (start the
            # timeout), a full batch, or the last request that can come. Waking it on every
            # request costs a thread switch each.
            if (
                len(self._queue) == 1
                or self._rows >= self.max_batch_size
                or (self._all_waiting is not None and self._all_waiting())
            ):
                self._condition.notify()
        return task

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
            pending, self._queue = list(self._queue), deque()
        for task in pending:
            if task.set_running_or_notify_cancel():
                task.set_exception(
                    ServingError("UNAVAILABLE", "this model version was unloaded; retry")
                )

    def _take(self) -> list[_Task] | None:
        with self._condition:
            while True:
                if self._stopped:
                    return None
                if not self._queue:
                    self._condition.wait()
                    continue
                if (
                    self.timeout <= 0
                    or self._rows >= self.max_batch_size
                    or (self._all_waiting is not None and self._all_waiting())
                ):
                    break
                # The timeout counts from the oldest waiting request's arrival (as in
                # TensorFlow Serving), not from when this thread began to wait: with several
                # batch threads, a wait begun for an earlier batch would cut the next one short.
                remaining = self._queue[0].enqueued + self.timeout - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            first = self._queue.popleft()
            batch, rows, kept = [first], first.rows, deque()
            while self._queue and rows < self.max_batch_size:
                task = self._queue.popleft()
                if task.key == first.key and rows + task.rows <= self.max_batch_size:
                    batch.append(task)
                    rows += task.rows
                else:
                    kept.append(task)
            kept.extend(self._queue)
            self._queue = kept
            self._rows -= rows
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            batch = [task for task in batch if task.set_running_or_notify_cancel()]
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Task]) -> None:
        if len(batch) > 1:
            try:
                merged = {
                    name: np.concatenate([task.arrays[name] for task in batch])
                    for name in batch[0].arrays
                }
                outputs = self.signature.run(merged)
                self.stats.add(
                    model_calls=1,
                    batched_rows=sum(t.rows for t in batch),
                    merged_requests=len(batch),
                )
                total = sum(task.rows for task in batch)
                if all(value.ndim and value.shape[0] == total for value in outputs.values()):
                    shared = BatchOutputs(outputs)
                    start, on_loops = 0, []
                    for task in batch:
                        end = start + task.rows
                        if type(task) is _LoopTask:
                            task.result = shared.rows(start, end)
                            on_loops.append(task)
                        else:
                            task.set_result(shared.rows(start, end))
                        start = end
                    _LoopTask.deliver_all(on_loops)
                    return
            except ServingError:
                pass  # rerun one by one below, so only the bad request fails
            except Exception:  # noqa: BLE001 - never let the batch thread die
                logger.exception("merged batch failed; rerunning its requests one by one")
        for task in batch:
            try:
                task.set_result(self.signature.run(task.arrays))
                self.stats.add(model_calls=1, batched_rows=task.rows, merged_requests=1)
            except BaseException as error:  # noqa: BLE001 - handed to the waiting request
                task.set_exception(error)


# ----------------------------------------------------------------------------- versions and models


class Servable:
    """One loaded model version: its signatures, signature definitions and batchers."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        import tensorflow as tf

        self.name = name
        self.version = version
        self.path = path
        self.loaded = tf.saved_model.load(str(path))  # keeps the functions' variables alive
        self.signatures = {key: Signature(key, fn) for key, fn in self.loaded.signatures.items()}
        self.signature_def_map = read_signature_defs(path)
        self.batchers: dict[str, Batcher] = {}
        self._batcher_lock = threading.Lock()

    def signature(self, name: str) -> Signature:
        name = name or DEFAULT_SIGNATURE
        signature = self.signatures.get(name)
        if signature is None:
            raise invalid(
                f'Serving signature name: "{name}" not found in signature def; this model has '
                + ", ".join(sorted(self.signatures))
            )
        return signature

    def batcher(
        self, signature: Signature, options: ServerOptions, stats: Stats, all_waiting: Any = None
    ) -> Batcher:
        batcher = self.batchers.get(signature.name)
        if batcher is None:
            with self._batcher_lock:
                batcher = self.batchers.get(signature.name)
                if batcher is None:
                    batcher = Batcher(
                        signature,
                        options.max_batch_size,
                        options.batch_timeout_micros / 1e6,
                        options.num_batch_threads,
                        stats,
                        all_waiting,
                    )
                    self.batchers[signature.name] = batcher
        return batcher

    def unload(self) -> None:
        with self._batcher_lock:
            for batcher in self.batchers.values():
                batcher.stop()
            self.batchers.clear()


def read_signature_defs(path: Path) -> Any:
    """The SignatureDefMap stored in `saved_model.pb` (what GetModelMetadata returns)."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    result = get_model_metadata_pb2.SignatureDefMap()
    if saved.meta_graphs:
        for key, value in saved.meta_graphs[0].signature_def.items():
            result.signature_def[key].CopyFrom(value)
    return result


@dataclass
class VersionState:
    """A version's state as TensorFlow Serving reports it."""

    state: str  # AVAILABLE | END (failed or unloaded)
    error_code: str = "OK"
    error_message: str = ""
    mtime: float = 0.0  # of the version directory when the load failed: retry when it changes


class Registry:
    """The models under the base path, their loaded versions, and the poller that keeps them current."""

    def __init__(self, options: ServerOptions, executor: Executor) -> None:
        self.options = options
        self.executor = executor
        self.base = Path(options.model_base_path)
        self._models: dict[str, dict[int, Servable]] = {}
        self._states: dict[str, dict[int, VersionState]] = {}
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._warned: set[Path] = set()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # Discovery -----------------------------------------------------------------

    def discover(self) -> dict[str, Path]:
        """Model name -> model directory; the base path itself when it holds versions."""
        if not self.base.is_dir():
            raise FileNotFoundError(f"model base path not found: {self.base} (--model-base-path)")
        if self._versions_on_disk(self.base):
            name = self.options.model_name or self.base.resolve().name
            if not valid_model_name(name):
                name = "default"
            return {name: self.base}
        models = {}
        for child in sorted(self.base.iterdir()):
            if child.is_dir() and valid_model_name(child.name) and self._inside_base(child):
                models[child.name] = child
        return models

    def _inside_base(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.base.resolve())
        except ValueError:
            if path not in self._warned:  # once, not at every poll
                self._warned.add(path)
                logger.warning("skipping %s: it resolves outside the model base path", path)
            return False
        return True

    def _versions_on_disk(self, model_dir: Path) -> dict[int, Path]:
        versions = {}
        try:
            children = list(model_dir.iterdir())
        except OSError:
            return {}
        for child in children:
            if VERSION.fullmatch(child.name) and (child / "saved_model.pb").is_file():
                versions[int(child.name)] = child
        return versions

    # Loading ---------------------------------------------------------------------

    def poll(self) -> list[str]:
        """Load new versions and unload removed ones; return one line per change.

        Readers never lock: every change publishes fresh dictionaries
        (copy-on-write), so a request sees either the old or the new set.
        """
        with self._poll_lock:
            return self._poll()

    def _publish(
        self, name: str, version: int, servable: Servable | None, state: VersionState | None
    ) -> None:
        with self._lock:
            versions = dict(self._models.get(name, {}))
            states = dict(self._states.get(name, {}))
            if servable is None:
                versions.pop(version, None)
            else:
                versions[version] = servable
            if state is None:
                states.pop(version, None)
            else:
                states[version] = state
            models = dict(self._models)
            if versions:
                models[name] = versions
            else:
                models.pop(name, None)
            self._models = models
            self._states = {**self._states, name: states}

    def _poll(self) -> list[str]:
        changes = []
        models = self.discover()
        for name, model_dir in models.items():
            on_disk = {
                v: p for v, p in self._versions_on_disk(model_dir).items() if self._inside_base(p)
            }
            loaded = self._models.get(name, {})
            states = self._states.get(name, {})
            for version in sorted(set(on_disk) - set(loaded)):
                path = on_disk[version]
                state = states.get(version)
                mtime = _mtime(path)
                if (
                    state is not None
                    and state.state == "END"
                    and state.error_code != "OK"
                    and state.mtime == mtime
                ):
                    continue  # failed before and unchanged since
                try:
                    servable = Servable(name, version, path)
                    replayed = replay_warmup(servable, self.executor)
                except Exception as error:  # noqa: BLE001 - a bad version must not stop the server
                    message = f"{type(error).__name__}: {first_line(error)}"
                    failed = VersionState("END", "UNKNOWN", f"failed to load: {message}", mtime)
                    self._publish(name, version, None, failed)
                    changes.append(f"model {name} version {version}: failed to load ({message})")
                    continue
                self._publish(name, version, servable, VersionState("AVAILABLE"))
                warm = f", {replayed} warm-up request(s) replayed" if replayed else ""
                changes.append(f"model {name} version {version}: loaded from {path}{warm}")
            for version in sorted(set(loaded) - set(on_disk)):
                self._publish(name, version, None, VersionState("END"))
                loaded[version].unload()
                changes.append(f"model {name} version {version}: unloaded (removed from disk)")
            for version, state in states.items():
                if state.error_code != "OK" and version not in on_disk:
                    self._publish(name, version, None, None)  # a failed version was removed
        for name in set(self._models) - set(models):
            gone = self._models[name]
            with self._lock:
                self._models = {k: v for k, v in self._models.items() if k != name}
                self._states = {k: v for k, v in self._states.items() if k != name}
            for servable in gone.values():
                servable.unload()
            changes.append(f"model {name}: unloaded (directory removed)")
        return changes

    def start_polling(self, echo: Any = None) -> None:
        if self.options.poll_seconds <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(self.options.poll_seconds):
                try:
                    for line in self.poll():
                        (echo or logger.info)(line)
                except Exception as error:  # noqa: BLE001 - keep polling
                    logger.warning("polling %s failed: %s", self.base, first_line(error))

        self._poller = threading.Thread(target=loop, name="version-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        for versions in list(self._models.values()):
            for servable in versions.values():
                servable.unload()

    # Lookup ----------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def summary(self) -> str:
        return (
            "; ".join(
                f"{name} (version{'s' if len(v) > 1 else ''} {', '.join(str(n) for n in sorted(v))})"
                for name, v in sorted(self._models.items())
            )
            or "none yet"
        )

    def get(self, name: str, version: int | str | None = None) -> Servable:
        """The servable for `name` at `version` (default: the highest); NOT_FOUND otherwise."""
        check_name(name)
        number = parse_version(version)
        versions = self._models.get(name)
        if number is None:
            if versions:
                return versions[max(versions)]
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        servable = versions.get(number) if versions else None
        if servable is None:
            raise ServingError(
                "NOT_FOUND", f"Servable not found for request: Specific({name}, {number})"
            )
        return servable

    def status(self, name: str, version: int | str | None = None) -> list[tuple[int, VersionState]]:
        check_name(name)
        number = parse_version(version)
        states = self._states.get(name)
        if not states:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        if number is not None:
            if number not in states:
                raise ServingError("NOT_FOUND", f"Could not find version {number} of model {name}")
            return [(number, states[number])]
        return sorted(states.items(), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def check_name(name: str) -> None:
    if not valid_model_name(name):
        shown = name if len(name) <= 80 else name[:80] + "..."
        raise invalid(
            f"invalid model name {shown!r}: use letters, digits, '_', '.', '-' (no path separators or '..')"
        )


def parse_version(version: int | str | None) -> int | None:
    if version is None or version == "":
        return None
    if isinstance(version, int):
        return version
    if not VERSION.fullmatch(version):
        raise invalid(f"Failed to convert version: {version[:40]} to numeric.")
    return int(version)


# ----------------------------------------------------------------------------- execution


@dataclass
class Stats:
    """Counters behind /monitoring/prometheus/metrics (and the benchmark)."""

    requests: int = 0
    errors: int = 0
    model_calls: int = 0
    batched_rows: int = 0
    merged_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def prometheus(self) -> str:
        lines = []
        for key in ("requests", "errors", "model_calls", "batched_rows", "merged_requests"):
            lines += [
                f"# TYPE textrnn_serving_{key}_total counter",
                f"textrnn_serving_{key}_total {getattr(self, key)}",
            ]
        return "\n".join(lines) + "\n"


class _Watched:
    """A pool future watched by `_Completions`: `callback(future)` or `expired()`, once."""

    __slots__ = ("future", "callback", "expired")

    def __init__(self, future: concurrent.futures.Future, callback: Any, expired: Any) -> None:
        self.future, self.callback, self.expired = future, callback, expired

    def deliver(self) -> None:
        callback = self.callback
        if callback is None:
            return  # the deadline answered first
        self.callback = None
        future, self.future = self.future, None  # the deadline queue may hold this a while
        callback(future)

    def expire(self) -> None:
        if self.callback is None:
            return
        self.callback = None
        self.future.cancel()
        self.expired()


class _Completions:
    """Hands finished model calls to an event loop, one wake-up per burst.

    A merged batch finishes many requests at once; waking the loop once for
    all of them (rather than once each, as `asyncio.wrap_future` would) saves
    a thread handoff per request.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._deadlines: deque[tuple[float, _LoopTask | _Watched]] = deque()  # submission order
        self._sweeper: asyncio.TimerHandle | None = None

    def expect(self, task: _LoopTask | _Watched, timeout: float) -> None:
        """On the loop: expire `task` if it is unanswered (its `callback` still set)
        `timeout` seconds from now.

        Every task waits the same timeout (the executor's request timeout), so
        their deadlines come in submission order: one queue and one timer serve
        them all, instead of a timer per request armed and cancelled on the loop.
        """
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].callback is None:
            deadlines.popleft()  # answered
        deadlines.append((time.monotonic() + timeout, task))
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(timeout, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        deadlines, now = self._deadlines, time.monotonic()
        while deadlines:
            due, task = deadlines[0]
            if task.callback is not None and due > now:
                break
            deadlines.popleft()
            if task.callback is not None:
                task.expire()
        if deadlines:
            self._sweeper = self.loop.call_later(max(0.0, deadlines[0][0] - now), self._sweep)

    def watch(
        self,
        future: concurrent.futures.Future,
        timeout: float,
        callback: Any,
        expired: Any,
    ) -> None:
        """On the loop, call `callback(future)` once `future` is done, or `expired()` (and
        cancel the future if it has not started) after `timeout` seconds, whichever is first."""
        watched = _Watched(future, callback, expired)
        self.expect(watched, timeout)
        future.add_done_callback(lambda done: self.push(watched.deliver))

    def push(self, deliver: Any) -> None:
        """From any thread: call `deliver()` on the loop soon (one wake-up for a burst)."""
        self.push_many((deliver,))

    def push_many(self, delivers: Any) -> None:
        """`push` for several, delivered in the same pass of the loop."""
        with self._lock:
            self._items.extend(delivers)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, deque()
            self._scheduled = False
        for deliver in items:
            deliver()


class Executor:
    """Runs model calls with a deadline, merged by `Batcher`s when batching is on."""

    def __init__(self, options: ServerOptions, stats: Stats) -> None:
        self.options = options
        self.stats = stats
        self.timeout = options.request_timeout_ms / 1000
        self._pool = concurrent.futures.ThreadPoolExecutor(
            options.num_workers, thread_name_prefix="model"
        )
        self._completions: dict[asyncio.AbstractEventLoop, _Completions] = {}
        # Set by the REST front end: True when every connection waits for an answer.
        self.connections_all_waiting: Any = None
        self._blocking = 0  # callers waiting in `run` (gRPC, worker threads)
        self._blocking_lock = threading.Lock()

    def all_waiting(self) -> bool:
        """No request can arrive before an answer goes out (see `ServerOptions`)."""
        hint = self.connections_all_waiting
        return self._blocking == 0 and hint is not None and hint()

    def _batcher(self, servable: Servable, signature: Signature) -> Batcher:
        hint = self.all_waiting if self.options.batch_when_all_clients_wait else None
        return servable.batcher(signature, self.options, self.stats, hint)

    def submit(
        self,
        servable: Servable,
        signature: Signature,
        arrays: dict[str, np.ndarray],
        rows: int,
    ) -> concurrent.futures.Future:
        """Start one model call (merged by the batcher when batching is on); a future for its outputs."""
        if self._merges(signature, arrays, rows):
            return self._batcher(servable, signature).submit(arrays, rows)
        return self._pool.submit(self._call, signature, arrays, rows)

    def _merges(self, signature: Signature, arrays: dict[str, np.ndarray], rows: int) -> bool:
        """Whether this call goes through the signature's batcher."""
        return (
            self.options.enable_batching
            and signature.batchable
            and rows <= self.options.max_batch_size
            and all(a.shape[0] == rows for a in arrays.values())
        )

    def run(
        self,
        servable: Servable,
        signature: Signature,
        arrays: dict[str, np.ndarray],
        rows: int,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """`submit` and wait, at most the request timeout (or `timeout`, if shorter)."""
        timeout = self.timeout if timeout is None else min(timeout, self.timeout)
        with self._blocking_lock:
            self._blocking += 1  # its caller may send more meanwhile: batches wait for it
        try:
            future = self.submit(servable, signature, arrays, rows)
            try:
                return future.result(timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise self._deadline(timeout) from None
        finally:
            with self._blocking_lock:
                self._blocking -= 1

    def run_on_loop(
        self,
        servable: Servable,
        signature: Signature,
        arrays: dict[str, np.ndarray],
        rows: int,
        callback: Any,
    ) -> None:
        """`run` for the event loop, without holding a thread: later, on the running loop,
        `callback(outputs, None)` or `callback(None, error)`."""
        loop = asyncio.get_running_loop()
        completions = self._completions.get(loop)
        if completions is None:
            completions = self._completions.setdefault(loop, _Completions(loop))
        if self._merges(signature, arrays, rows):
            task = self._batcher(servable, signature).submit(
                arrays,
                rows,
                lambda key: _LoopTask(arrays, rows, key, completions, callback, self._timed_out),
            )
            # Once queued (a refused submit leaves nothing to expire). It cannot be delivered
            # before: that happens on this loop, after this callback returns.
            completions.expect(task, self.timeout)  # type: ignore[arg-type]
            return

        def done(future: concurrent.futures.Future) -> None:
            try:
                outputs = future.result(0)  # done already: one lock, not three
            except concurrent.futures.CancelledError:
                callback(None, ServingError("UNAVAILABLE", "the model call was cancelled; retry"))
            except BaseException as error:  # noqa: BLE001 - handed to the request
                callback(None, error)
            else:
                callback(outputs, None)

        completions.watch(
            self.submit(servable, signature, arrays, rows),
            self.timeout,
            done,
            lambda: callback(None, self._deadline(self.timeout)),
        )

    def _call(
        self, signature: Signature, arrays: dict[str, np.ndarray], rows: int
    ) -> dict[str, np.ndarray]:
        result = signature.run(arrays)
        self.stats.add(model_calls=1, batched_rows=rows, merged_requests=1)
        return result

    def _timed_out(self) -> ServingError:
        return self._deadline(self.timeout)

    def _deadline(self, timeout: float) -> ServingError:
        return ServingError(
            "DEADLINE_EXCEEDED",
            f"Deadline exceeded: the request took longer than {timeout * 1000:.0f} ms",
        )

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def replay_warmup(servable: Servable, executor: Executor | None = None) -> int:
    """Run the version's `assets.extra/tf_serving_warmup_requests` (PredictionLog records); return the count.

    Like TensorFlow Serving, a warm-up request that fails fails the load.
    """
    path = servable.path / "assets.extra" / WARMUP_FILE
    if not path.is_file():
        return 0
    try:
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError:
        logger.warning("%s: tensorflow-serving-api is not installed; skipping warm-up", path)
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS + 1):
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise ValueError(f"{path}: more than {MAX_WARMUP_RECORDS} warm-up records")
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        kind = log.WhichOneof("log_type")
        if kind == "predict_log":
            request = log.predict_log.request
            signature = servable.signature(request.model_spec.signature_name)
            arrays = {
                key: tensor_proto_to_array(value, signature, key)
                for key, value in request.inputs.items()
            }
            signature.check(arrays)
            signature.run(arrays)
        elif kind == "classify_log":
            request = log.classify_log.request
            classify(
                servable, request.model_spec.signature_name, serialized_examples(request.input)
            )
        else:
            raise ValueError(
                f"{path}: warm-up record {count} is a {kind}, which textrnn does not replay"
            )
    return count


# ----------------------------------------------------------------------------- JSON <-> arrays


def _utf8(value: str, where: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as error:  # JSON "\ud800": a lone UTF-16 surrogate
        bad = value[error.start]
        raise invalid(
            f"{where}: a string holds a lone UTF-16 surrogate (\\u{ord(bad):04x} at character "
            f'{error.start}), which is not Unicode text; send bytes as {{"b64": ...}}'
        ) from None


def _string_leaf(value: Any, where: str) -> bytes:
    if type(value) is str:
        return _utf8(value, where)
    if type(value) is dict and len(value) == 1 and "b64" in value:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise invalid(f"{where}: 'b64' value is not valid base64") from None
    raise invalid(f"{where} expects strings, got {type(value).__name__} {_short(value)}")


def _short(value: Any) -> str:
    text = json.dumps(value)[:60]
    return text


def _string_array(value: Any, where: str) -> np.ndarray:
    if type(value) is list and all(
        type(v) is str for v in value
    ):  # the common case: a batch of texts
        array = np.empty(len(value), dtype=object)
        try:
            array[:] = [v.encode("utf-8") for v in value]
        except UnicodeEncodeError:
            array[:] = [_utf8(v, where) for v in value]  # raises, naming the string
        return array
    leaves: list[bytes] = []
    shape = _walk(value, leaves, where)
    array = np.empty(len(leaves), dtype=object)
    array[:] = leaves
    return array.reshape(shape)


def _walk(value: Any, leaves: list[bytes], where: str, depth: int = 0) -> tuple[int, ...]:
    if type(value) is not list:
        leaves.append(_string_leaf(value, where))
        return ()
    if depth > 32:
        raise invalid(f"{where}: nested too deeply")
    shapes = {_walk(item, leaves, where, depth + 1) for item in value}
    if len(shapes) > 1:
        raise invalid(f"{where}: ragged nested lists; every row must have the same length")
    return (len(value), *(shapes.pop() if shapes else ()))


def _numeric_array(value: Any, dtype: Any, where: str) -> np.ndarray:
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError):
        raise invalid(
            f"{where}: ragged nested lists; every row must have the same length"
        ) from None
    kind = raw.dtype.kind
    target = np.dtype(dtype.as_numpy_dtype)
    if kind in "OUSV":
        raise invalid(
            f"{where} expects {dtype.name} values, got {_short(value) if kind != 'O' else 'mixed or non-numeric values'}"
        )
    if target.kind == "b":
        if kind != "b":
            raise invalid(f"{where} expects booleans (true / false), got {raw.dtype.name} values")
        return raw
    if target.kind in "iu" and kind == "f":
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.floor(raw)):
            raise invalid(f"{where} expects integers ({dtype.name}), got non-integral numbers")
    if target.kind in "iu":
        info = np.iinfo(target)
        if raw.size and (raw.min() < info.min or raw.max() > info.max):
            raise invalid(f"{where}: value out of range for {dtype.name}")
    return raw.astype(target, copy=False)


def json_to_array(value: Any, spec: TensorSpecInfo, where: str) -> np.ndarray:
    if spec.is_string:
        return _string_array(value, where)
    if type(value) is dict:
        raise invalid(f"{where} expects {spec.dtype.name} values, got an object")
    return _numeric_array(value, spec.dtype, where)


def rows_to_arrays(instances: Any, signature: Signature) -> tuple[dict[str, np.ndarray], int]:
    """TensorFlow Serving's row format: a list with one value (or one object of named inputs) per row."""
    if type(instances) is not list:
        raise invalid("'instances' must be a list with one entry per example")
    if not instances:
        raise invalid("empty batch: 'instances' has no elements")
    specs = signature.inputs
    names = list(specs)
    named = type(instances[0]) is dict and not (
        len(instances[0]) == 1 and "b64" in instances[0] and "b64" not in specs
    )
    if not named:
        if len(names) != 1:
            raise invalid(
                f"signature {signature.name!r} takes {len(names)} inputs ({', '.join(names)}); "
                "give each instance as an object of named inputs"
            )
        spec = specs[names[0]]
        return {names[0]: json_to_array(instances, spec, f"input {names[0]!r}")}, len(instances)
    arrays = {}
    for position, instance in enumerate(instances):
        if type(instance) is not dict:
            raise invalid(
                f"instance {position} is not an object; mix of named and unnamed instances"
            )
        if instance.keys() != specs.keys():
            missing = sorted(specs.keys() - instance.keys())
            unknown = sorted(instance.keys() - specs.keys())
            what = "; ".join(
                p
                for p in (
                    "missing input(s) " + ", ".join(map(repr, missing)) if missing else "",
                    "unknown input(s) " + ", ".join(map(repr, unknown)) if unknown else "",
                )
                if p
            )
            raise invalid(
                f"instance {position}: {what} for signature {signature.name!r}; it takes "
                + ", ".join(f"{k!r} ({s.describe()})" for k, s in specs.items())
            )
    for name, spec in specs.items():
        values = [instance[name] for instance in instances]
        if spec.shape == ():  # a scalar knob given per instance: all must agree
            first = values[0]
            if any(v != first for v in values[1:]):
                raise invalid(
                    f"input {name!r} is a scalar; give the same value in every instance or use 'inputs'"
                )
            arrays[name] = json_to_array(first, spec, f"input {name!r}")
        else:
            arrays[name] = json_to_array(values, spec, f"input {name!r}")
    return arrays, len(instances)


def columns_to_arrays(inputs: Any, signature: Signature) -> dict[str, np.ndarray]:
    """TensorFlow Serving's columnar format: one value (single input) or an object of named inputs."""
    specs = signature.inputs
    if type(inputs) is dict and not (len(inputs) == 1 and "b64" in inputs and "b64" not in specs):
        return {
            name: json_to_array(value, specs[name], f"input {name!r}")
            if name in specs
            else np.zeros(0)
            for name, value in inputs.items()
        }
    if len(specs) != 1:
        raise invalid(
            f"signature {signature.name!r} takes {len(specs)} inputs ({', '.join(specs)}); give 'inputs' as an object"
        )
    name = next(iter(specs))
    return {name: json_to_array(inputs, specs[name], f"input {name!r}")}


def array_to_json(array: np.ndarray, name: str) -> Any:
    """An output tensor as JSON: strings decoded as UTF-8 (base64 objects for `*_bytes` or non-UTF-8)."""
    if array.dtype == object or array.dtype.kind == "S":
        flat = array.reshape(-1).tolist()
        if name.endswith("_bytes"):
            values = [{"b64": base64.b64encode(v).decode("ascii")} for v in flat]
        else:
            values = []
            for v in flat:
                try:
                    values.append(v.decode("utf-8"))
                except UnicodeDecodeError:
                    values.append({"b64": base64.b64encode(v).decode("ascii")})
        if array.ndim == 0:
            return values[0]
        if array.ndim == 1:
            return values
        nested = np.empty(len(values), dtype=object)
        nested[:] = values
        return nested.reshape(array.shape).tolist()
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        return np.where(np.isfinite(array), array, np.nan).tolist()
    return array.tolist()


def predictions_json(outputs: dict[str, np.ndarray], rows: int) -> list[Any]:
    """Row format answer: one value per row (single output) or one object per row."""
    if type(outputs) is RowSlice:  # rows of a merged batch, converted once for all of them
        return outputs.batch.json_rows()[outputs.start : outputs.end]
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != rows:
            raise invalid(
                f"output {name!r} has shape {list(value.shape)}, not one row per instance; "
                "use the columnar format ('inputs') for this signature"
            )
    return rows_json({name: array_to_json(value, name) for name, value in outputs.items()})


def rows_json(columns: dict[str, list[Any]]) -> list[Any]:
    """Per-output JSON columns -> rows: the values (one output) or one object of outputs per row."""
    if len(columns) == 1:
        return next(iter(columns.values()))
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def outputs_json(outputs: dict[str, np.ndarray]) -> Any:
    if type(outputs) is RowSlice:
        columns = outputs.batch.json_columns()
        converted = {name: column[outputs.start : outputs.end] for name, column in columns.items()}
    else:
        converted = {name: array_to_json(value, name) for name, value in outputs.items()}
    return next(iter(converted.values())) if len(converted) == 1 else converted


# ----------------------------------------------------------------------------- classify


def example_from_json(features: Any, where: str) -> Any:
    import tensorflow as tf

    if type(features) is not dict:
        raise invalid(f"{where} must be an object of feature name -> value(s)")
    example = tf.train.Example()
    for key, value in features.items():
        values = value if type(value) is list else [value]
        feature = example.features.feature[key]
        if all(type(v) is int for v in values):
            feature.int64_list.value.extend(values)
        elif all(type(v) in (int, float) for v in values):
            feature.float_list.value.extend(values)
        else:
            feature.bytes_list.value.extend(
                _string_leaf(v, f"{where}, feature {key!r}") for v in values
            )
    return example


def serialized_examples(proto_input: Any) -> list[bytes]:
    """Serialized tf.Examples from a tensorflow_serving `Input` proto (context merged in)."""
    kind = proto_input.WhichOneof("kind")
    if kind == "example_list":
        return [example.SerializeToString() for example in proto_input.example_list.examples]
    if kind == "example_list_with_context":
        context = proto_input.example_list_with_context.context
        out = []
        for example in proto_input.example_list_with_context.examples:
            merged = type(example)()
            merged.CopyFrom(context)
            merged.MergeFrom(example)
            out.append(merged.SerializeToString())
        return out
    raise invalid("classification input holds no examples")


def classify_signature(servable: Servable, name: str) -> Signature:
    if not name:
        # TensorFlow Serving defaults to serving_default; textrnn's classifiers export "classify".
        name = "classify" if "classify" in servable.signatures else DEFAULT_SIGNATURE
    signature = servable.signature(name)
    string_inputs = [s for s in signature.inputs.values() if s.is_string and s.shape == (None,)]
    if (
        len(signature.inputs) != 1
        or not string_inputs
        or not set(signature.outputs) & {"classes", "scores"}
    ):
        raise ServingError(
            "FAILED_PRECONDITION",
            f"signature {signature.name!r} is not a classification signature "
            "(one serialized tf.Example input; 'classes' and / or 'scores' outputs)",
        )
    return signature


def classify(
    servable: Servable, signature_name: str, examples: list[bytes], executor: Executor | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Run a classification signature on serialized tf.Examples; return (classes, scores)."""
    signature = classify_signature(servable, signature_name)
    if not examples:
        raise invalid("empty batch: no examples to classify")
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    arrays = {next(iter(signature.inputs)): array}
    outputs = (
        executor.run(servable, signature, arrays, len(examples))
        if executor
        else signature.run(arrays)
    )
    return outputs.get("classes"), outputs.get("scores")


# ----------------------------------------------------------------------------- REST


@dataclass
class _PredictCall:
    """A validated `:predict` request, ready to run."""

    servable: Servable
    signature: Signature
    arrays: dict[str, np.ndarray]
    rows: int
    row_format: bool

    def answer(self, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
        if self.row_format:
            return {"predictions": predictions_json(outputs, self.rows)}
        return {"outputs": outputs_json(outputs)}


class RESTFrontEnd:
    """TensorFlow Serving's REST API over a `Registry` (transport-independent)."""

    def __init__(
        self, registry: Registry, executor: Executor, options: ServerOptions, stats: Stats
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.options = options
        self.stats = stats
        # Requests `handle_on_loop` does not decode on the event loop run here.
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max(4, options.num_workers), thread_name_prefix="rest"
        )

    def shutdown(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """(HTTP status, JSON-able answer or text) for one request; never raises."""
        self.stats.add(requests=1)
        try:
            return 200, self._route(method, path.split("?", 1)[0], body)
        except BaseException as error:  # noqa: BLE001 - the server must survive any request
            return self._failure(error, method, path)

    def handle_on_loop(self, method: str, path: str, body: bytes, reply: Any) -> None:
        """`handle` for the event loop: calls `reply(status, answer)` once, now or later.

        A small `:predict` is decoded on the loop and its model call (merged
        with others when batching is on) answers through a callback, without
        holding a thread; everything else (status, metadata, classify, large
        bodies) runs `handle`'s path on a worker thread, so the loop never blocks.
        """
        self.stats.add(requests=1)
        path = path.split("?", 1)[0]
        try:
            match = PREDICT_PATH.fullmatch(path) if method == "POST" else None
            if match and match[3].lower() == "predict" and len(body) <= INLINE_BODY_BYTES:
                call = self._predict_call(unquote(match[1]), match[2], parse_json_body(body))

                def answer(outputs: dict[str, np.ndarray] | None, error: Any) -> None:
                    if error is None:
                        try:
                            reply(200, call.answer(outputs))  # type: ignore[arg-type]
                            return
                        except Exception as failure:  # noqa: BLE001 - answered below
                            error = failure
                    reply(*self._failure(error, method, path))

                self.executor.run_on_loop(
                    call.servable, call.signature, call.arrays, call.rows, answer
                )
                return
            future = asyncio.get_running_loop().run_in_executor(
                self._threads, self._route, method, path, body
            )
        except Exception as error:  # noqa: BLE001 - the server must survive any request
            reply(*self._failure(error, method, path))
            return

        def routed(done: asyncio.Future) -> None:
            if done.cancelled():
                reply(503, {"error": "the server is shutting down"})
            elif done.exception() is not None:
                reply(*self._failure(done.exception(), method, path))  # type: ignore[arg-type]
            else:
                reply(200, done.result())

        future.add_done_callback(routed)

    def _failure(self, error: BaseException, method: str, path: str) -> tuple[int, Any]:
        self.stats.add(errors=1)
        if isinstance(error, ServingError):
            return error.http_status, {"error": error.message}
        if not isinstance(error, Exception):
            raise error
        logger.error("internal error on %s %s", method, path[:200], exc_info=error)
        return 500, {"error": f"internal error: {type(error).__name__}: {first_line(error)}"}

    def _route(self, method: str, path: str, body: bytes) -> Any:
        if method == "POST":
            match = PREDICT_PATH.fullmatch(path)
            if match:
                name, version, verb = unquote(match[1]), match[2], match[3].lower()
                request = parse_json_body(body)
                if verb == "predict":
                    return self.predict(name, version, request)
                if verb == "classify":
                    return self.classify(name, version, request)
                raise ServingError(
                    "UNIMPLEMENTED", "textrnn exports have no regression signatures; use :predict"
                )
        elif method == "GET":
            if path == METRICS_PATH:
                return self.stats.prometheus()
            match = STATUS_PATH.fullmatch(path)
            if match:
                if match[1] is None:
                    raise invalid("Missing model name in request.")
                name, version = unquote(match[1]), match[2]
                return self.metadata(name, version) if match[3] else self.status(name, version)
        if not path.lower().startswith("/v1/"):
            raise ServingError(
                "NOT_FOUND",
                f"no such endpoint: {method} {path[:200]} (the API is under /v1/models)",
            )
        raise invalid(f"Malformed request: {method} {path[:200]}")

    def status(self, name: str, version: str | None) -> dict[str, Any]:
        return {
            "model_version_status": [
                {
                    "version": str(number),
                    "state": state.state,
                    "status": {
                        "error_code": state.error_code,
                        "error_message": state.error_message,
                    },
                }
                for number, state in self.registry.status(name, version)
            ]
        }

    def metadata(self, name: str, version: str | None) -> dict[str, Any]:
        from google.protobuf import json_format

        servable = self.registry.get(name, version)
        return {
            "model_spec": {
                "name": servable.name,
                "signature_name": "",
                "version": str(servable.version),
            },
            "metadata": {
                "signature_def": json_format.MessageToDict(
                    servable.signature_def_map,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )
            },
        }

    def predict(self, name: str, version: str | None, request: dict[str, Any]) -> dict[str, Any]:
        call = self._predict_call(name, version, request)
        return call.answer(self.executor.run(call.servable, call.signature, call.arrays, call.rows))

    def _predict_call(
        self, name: str, version: str | None, request: dict[str, Any]
    ) -> _PredictCall:
        """Validate a `:predict` request and decode its inputs; raises `ServingError`."""
        signature_name = request.get("signature_name", DEFAULT_SIGNATURE)
        if type(signature_name) is not str:
            raise invalid("'signature_name' must be a string")
        has_rows, has_columns = "instances" in request, "inputs" in request
        if has_rows == has_columns:
            raise invalid(
                "the request must hold exactly one of 'instances' (row format) or 'inputs' (columnar format)"
            )
        servable = self.registry.get(name, version)
        signature = servable.signature(signature_name)
        if has_rows:
            if (
                type(request["instances"]) is list
                and len(request["instances"]) > self.options.max_instances
            ):
                raise self._too_many(len(request["instances"]))
            arrays, _ = rows_to_arrays(request["instances"], signature)
        else:
            arrays = columns_to_arrays(request["inputs"], signature)
        rows = signature.check(arrays)
        if any(a.ndim and a.shape[0] == 0 for a in arrays.values()):
            raise invalid("empty batch: the inputs hold no examples")
        if rows > self.options.max_instances:
            raise self._too_many(rows)
        return _PredictCall(servable, signature, arrays, rows, has_rows)

    def classify(self, name: str, version: str | None, request: dict[str, Any]) -> dict[str, Any]:
        signature_name = request.get("signature_name", "")
        if type(signature_name) is not str:
            raise invalid("'signature_name' must be a string")
        examples = request.get("examples")
        if type(examples) is not list:
            raise invalid("a classify request needs 'examples': a list of feature objects")
        if len(examples) > self.options.max_instances:
            raise self._too_many(len(examples))
        context = request.get("context", {})
        if type(context) is not dict:
            raise invalid("'context' must be an object of feature name -> value(s)")
        servable = self.registry.get(name, version)
        serialized = []
        for position, example in enumerate(examples):
            if type(example) is dict and set(example) & set(context):
                raise invalid(
                    f"example {position} repeats context feature(s) {sorted(set(example) & set(context))}"
                )
            merged = {**context, **example} if type(example) is dict else example
            serialized.append(example_from_json(merged, f"example {position}").SerializeToString())
        classes, scores = classify(servable, signature_name, serialized, self.executor)
        return {"result": classification_json(classes, scores, len(serialized))}

    def _too_many(self, count: int) -> ServingError:
        return invalid(
            f"too many instances: {count} > {self.options.max_instances} (the server's --max-instances)"
        )


def classification_json(
    classes: np.ndarray | None, scores: np.ndarray | None, rows: int
) -> list[list[list[Any]]]:
    result = []
    for row in range(rows):
        labels = (
            [c.decode("utf-8", "replace") for c in classes[row]] if classes is not None else None
        )
        values = scores[row].tolist() if scores is not None else None
        width = len(labels) if labels is not None else len(values)  # type: ignore[arg-type]
        result.append(
            [
                [
                    labels[i] if labels is not None else str(i),
                    values[i] if values is not None else 0.0,
                ]
                for i in range(width)
            ]
        )
    return result


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


MAX_HEADER_BYTES = 64 * 1024
IDLE_SECONDS = 120.0  # idle keep-alive connections (and stalled requests) are closed after this
DRAIN_BYTES = (
    8 * 1024 * 1024
)  # an oversized body up to this much over the limit is read and dropped


_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_STATUS_LINES: dict[int, str] = {}


def http_answer(status: int, payload: Any, close: bool) -> bytes:
    """One HTTP/1.1 response: a JSON body, or Prometheus text when `payload` is a str."""
    if isinstance(payload, str):
        body, kind = payload.encode("utf-8"), "text/plain; version=0.0.4"
    else:
        try:
            body = _JSON_ENCODER.encode(payload).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (echoed from a request): escape it
            body = json.dumps(payload, separators=(",", ":")).encode("ascii")
        kind = "application/json"
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        line = _STATUS_LINES.setdefault(status, f"HTTP/1.1 {status} {reason}\r\n")
    head = (
        f"{line}Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode("latin-1") + body


@dataclass
class _Head:
    """A parsed request line and headers, waiting for its body."""

    method: str
    target: str
    keep_alive: bool
    length: int
    body_start: int


class _HTTPConnection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection on the REST event loop.

    Requests are parsed from the byte stream and answered in order, one at a
    time (pipelined requests wait in the buffer, which pauses reading when it
    grows past one maximum body). Anything malformed is answered with its
    status and the connection closed; the loop itself never raises.
    """

    def __init__(self, server: _RESTServer) -> None:
        self.server = server
        self.front = server.front
        self.limit = server.front.options.max_body_bytes
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.head: _Head | None = None
        self.busy = False  # a request is being answered
        self.answered = 0  # requests answered on this connection so far
        self.closing = False
        self.paused = False
        self.continue_sent = False
        self.discard = 0  # bytes of an oversized body still to read and drop before closing
        self.last_active = time.monotonic()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._end()
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.discard:
            dropped = min(self.discard, len(data))
            self.discard -= dropped
            if not self.discard:
                self._close()
            return
        if self.closing:
            return
        self.buffer += data
        if len(self.buffer) > self.limit + MAX_HEADER_BYTES and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        if not self.busy:
            self._next()

    def idle(self, now: float) -> None:
        """Close the connection if nothing has happened for `IDLE_SECONDS` (called by the server)."""
        if not self.busy and now - self.last_active > IDLE_SECONDS:
            self._close()

    # -- requests

    def _next(self) -> None:
        """Start answering the next complete request in the buffer, if there is one."""
        try:
            request = self._parse()
        except ServingError as error:
            self.front.stats.add(requests=1, errors=1)
            self._send(error.http_status, {"error": error.message}, close=True)
            return
        if request is None:
            if self.paused and len(self.buffer) <= self.limit + MAX_HEADER_BYTES:
                self.paused = False
                self.transport.resume_reading()  # type: ignore[union-attr]
            return
        head, body = request
        self._begin()
        if head.method in ("GET", "POST"):
            self.front.handle_on_loop(
                head.method,
                head.target,
                body,
                lambda status, payload: self._answered(status, payload, head.keep_alive),
            )
        else:
            self.front.stats.add(requests=1, errors=1)
            self._send(
                405,
                {"error": f"method {head.method[:20]} not allowed; use GET or POST"},
                close=not head.keep_alive,
            )
            self._done()

    def _answered(self, status: int, payload: Any, keep_alive: bool) -> None:
        self._send(status, payload, close=not keep_alive)
        self._done()

    def _begin(self) -> None:
        self.busy = True
        self.server.busy += 1
        if not self.answered:
            self.server.busy_first += 1

    def _end(self) -> None:
        if not self.busy:
            return  # the connection was lost while its answer was on the way
        self.busy = False
        self.server.busy -= 1
        if not self.answered:
            self.server.busy_first -= 1
        self.answered += 1

    def _done(self) -> None:
        self._end()
        self.last_active = time.monotonic()
        if not self.closing:
            self._next()

    def _send(self, status: int, payload: Any, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        close = close or self.server.draining
        self.transport.write(http_answer(status, payload, close))
        if close:
            self._close()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()  # after the buffered answer is written

    def _parse(self) -> tuple[_Head, bytes] | None:
        """The next request (head, body), None while incomplete; `ServingError` if malformed."""
        if self.head is None:
            self.head = self._parse_head()
            if self.head is None:
                return None
        head = self.head
        end = head.body_start + head.length
        if len(self.buffer) < end:
            if not self.continue_sent and self._expects_continue:
                self.continue_sent = True
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
            return None
        body = bytes(self.buffer[head.body_start : end])
        del self.buffer[:end]
        self.head, self.continue_sent = None, False
        return head, body

    def _parse_head(self) -> _Head | None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEADER_BYTES:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"request headers exceed {MAX_HEADER_BYTES} bytes",
                    http_status=431,
                )
            return None
        if end > MAX_HEADER_BYTES:
            raise ServingError(
                "INVALID_ARGUMENT", f"request headers exceed {MAX_HEADER_BYTES} bytes", 431
            )
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            raise invalid(f"malformed HTTP request line: {lines[0][:100]!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise invalid(f"malformed HTTP header line: {line[:100]!r}")
            headers[name.lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = (
            "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        )
        self._expects_continue = headers.get("expect", "").lower() == "100-continue"
        if headers.get("transfer-encoding", "identity").lower() != "identity":
            raise ServingError(
                "INVALID_ARGUMENT",
                "chunked request bodies are not supported; send Content-Length",
                http_status=411,
            )
        length_header = headers.get("content-length")
        if length_header is None:
            if method == "POST":
                raise ServingError(
                    "INVALID_ARGUMENT", "a POST needs a Content-Length header", http_status=411
                )
            length = 0
        elif not length_header.isdigit():
            raise invalid("invalid Content-Length header")
        else:
            length = int(length_header)
        if length > self.limit:
            self._refuse_oversized(length, end + 4)
            return None
        return _Head(method, target, keep_alive, length, end + 4)

    def _refuse_oversized(self, length: int, body_start: int) -> None:
        """413 for a body over the limit; read and drop a moderately oversized one first,
        so the client (still sending) gets the answer instead of a reset connection."""
        self.front.stats.add(requests=1, errors=1)
        already = len(self.buffer) - body_start
        del self.buffer[:]
        self._begin()  # nothing more is parsed on this connection
        self._send(
            413,
            {
                "error": f"request body of {length} bytes exceeds the limit of {self.limit} bytes "
                "(the server's --max-body-bytes)"
            },
            close=False,
        )
        remaining = length - already
        if self._expects_continue or remaining <= 0 or length > self.limit + DRAIN_BYTES:
            self._close()
        else:
            self.discard = remaining

    _expects_continue = False


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv, in C) when it is installed (the `serving` extra), else asyncio's."""
    if os.environ.get("TEXTRNN_EVENT_LOOP") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class _RESTServer:
    """The REST front end: an asyncio event loop on its own thread, bound at construction."""

    def __init__(self, address: tuple[str, int], front: RESTFrontEnd) -> None:
        self.front = front
        self.connections: set[_HTTPConnection] = set()
        # Connections answering a request; those on their first one. Changed on the loop only.
        self.busy = 0
        self.busy_first = 0
        self.draining = False  # shutting down: answer what is in flight, then close
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.create_server(address, family=family, backlog=256)
        self.server_address = self.socket.getsockname()
        self.loop = _new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._run, name="rest", daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _HTTPConnection(self), sock=self.socket)
        )
        self.loop.call_later(1.0, self._reap_idle)
        self._started.set()
        try:
            self.loop.run_forever()
        finally:
            self._server.close()
            for connection in list(self.connections):
                connection._close()
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def all_waiting(self) -> bool:
        """Every open connection has sent a request and waits for its answer (from any thread).

        Then no other request can arrive before an answer goes out, unless a new
        connection opens. A connection still on its first request may be a client
        that connects per request, whose next requests would come on new
        connections: while one is open, this says no.
        """
        return self.busy_first == 0 and self.busy >= len(self.connections)

    def _reap_idle(self) -> None:
        now = time.monotonic()
        for connection in list(self.connections):
            connection.idle(now)
        self.loop.call_later(1.0, self._reap_idle)

    def shutdown(self, grace: float = 0.0) -> None:
        """Refuse new connections, answer the requests in flight (for at most `grace`
        seconds; each ends by the request timeout anyway), then close every connection."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._drain, time.monotonic() + grace)
            self._thread.join(grace + 5)
        else:
            self.socket.close()
        self.front.shutdown()

    def _drain(self, deadline: float) -> None:
        self.draining = True  # every answer from now on closes its connection
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if not connection.busy:
                connection._close()  # idle, or a request not complete yet
        if self.busy > 0:
            logger.warning("stopping: answering %d request(s) in flight first", self.busy)
        self._stop_when_answered(deadline)

    def _stop_when_answered(self, deadline: float) -> None:
        if self.busy <= 0 or time.monotonic() >= deadline:
            self.loop.stop()
        else:
            self.loop.call_later(0.01, self._stop_when_answered, deadline)


# ----------------------------------------------------------------------------- gRPC


def tensor_proto_to_array(proto: Any, signature: Signature, name: str) -> np.ndarray:
    import tensorflow as tf

    spec = signature.inputs.get(name)
    if spec is not None and proto.dtype != spec.dtype.as_datatype_enum:
        got = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "an unset dtype"
        raise invalid(
            f"input {name!r} of signature {signature.name!r} expects {spec.dtype.name}, got {got}"
        )
    if (
        proto.dtype == tf.string.as_datatype_enum
        and not proto.string_val
        and math.prod(d.size for d in proto.tensor_shape.dim) > 0
    ):
        # make_ndarray would serve empty strings (what an empty batch of texts is not).
        raise invalid(
            f"input {name!r}: a DT_STRING tensor of shape "
            f"{[d.size for d in proto.tensor_shape.dim]} holds no string_val"
        )
    try:
        return tf.make_ndarray(proto)
    except Exception as error:  # noqa: BLE001 - a malformed TensorProto
        raise invalid(f"input {name!r}: malformed TensorProto ({first_line(error)})") from None


def _grpc_services(
    registry: Registry, executor: Executor, options: ServerOptions, stats: Stats
) -> list[Any]:
    """PredictionService and ModelService servicers (built lazily: grpc is an optional extra)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        status_pb2,
    )

    codes = {code.name: code for code in grpc.StatusCode}
    error_codes = status_pb2.StatusProto.DESCRIPTOR.fields_by_name[
        "error_code"
    ].enum_type.values_by_name
    states = get_model_status_pb2.ModelVersionStatus.State

    def guarded(method: Any) -> Any:
        def wrapper(self: Any, request: Any, context: Any) -> Any:
            stats.add(requests=1)
            try:
                return method(self, request, context)
            except ServingError as error:
                stats.add(errors=1)
                context.abort(codes.get(error.code, grpc.StatusCode.UNKNOWN), error.message)
            except Exception as error:  # noqa: BLE001 - the server must survive any request
                if isinstance(error, grpc.RpcError) or type(error).__name__ == "_AbortError":
                    raise
                stats.add(errors=1)
                logger.exception("internal error in %s", method.__name__)
                context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"internal error: {type(error).__name__}: {first_line(error)}",
                )

        wrapper.__name__ = method.__name__
        return wrapper

    def version_of(model_spec: Any) -> int | None:
        if model_spec.WhichOneof("version_choice") == "version_label":
            raise ServingError(
                "UNIMPLEMENTED", "version labels are not supported; ask for a version number"
            )
        return model_spec.version.value if model_spec.HasField("version") else None

    def lookup(model_spec: Any) -> Servable:
        return registry.get(model_spec.name, version_of(model_spec))

    def deadline(context: Any) -> float | None:
        remaining = context.time_remaining()
        return remaining if remaining is not None and remaining < 1e9 else None

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        @guarded
        def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
            servable = lookup(request.model_spec)
            signature = servable.signature(request.model_spec.signature_name)
            arrays = {
                key: tensor_proto_to_array(value, signature, key)
                for key, value in request.inputs.items()
            }
            rows = signature.check(arrays)
            if any(a.ndim and a.shape[0] == 0 for a in arrays.values()):
                raise invalid("empty batch: the inputs hold no examples")
            if rows > options.max_instances:
                raise invalid(
                    f"too many instances: {rows} > {options.max_instances} (the server's --max-instances)"
                )
            wanted = set(request.output_filter)
            unknown = wanted - set(signature.outputs)
            if unknown:
                raise invalid(f"output tensor alias not found in signature: {sorted(unknown)[0]}")
            outputs = executor.run(servable, signature, arrays, rows, deadline(context))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature.name
            for key, value in outputs.items():
                if not wanted or key in wanted:
                    response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

        @guarded
        def Classify(self, request: Any, context: Any) -> Any:  # noqa: N802
            servable = lookup(request.model_spec)
            examples = serialized_examples(request.input)
            if len(examples) > options.max_instances:
                raise invalid(f"too many instances: {len(examples)} > {options.max_instances}")
            classes, scores = classify(
                servable, request.model_spec.signature_name, examples, executor
            )
            response = classification_pb2.ClassificationResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = classify_signature(
                servable, request.model_spec.signature_name
            ).name
            for row in classification_json(classes, scores, len(examples)):
                classifications = response.result.classifications.add()
                for label, score in row:
                    classifications.classes.add(label=label, score=score)
            return response

        @guarded
        def Regress(self, request: Any, context: Any) -> Any:  # noqa: N802
            raise ServingError(
                "UNIMPLEMENTED", "textrnn exports have no regression signatures; use Predict"
            )

        @guarded
        def MultiInference(self, request: Any, context: Any) -> Any:  # noqa: N802
            raise ServingError("UNIMPLEMENTED", "MultiInference is not supported; use Predict")

        @guarded
        def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
            servable = lookup(request.model_spec)
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise invalid(
                    "metadata_field must be ['signature_def'], the only metadata TensorFlow Serving has"
                )
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(servable.signature_def_map)
            return response

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        @guarded
        def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
            spec = request.model_spec
            response = get_model_status_pb2.GetModelStatusResponse()
            for number, state in registry.status(spec.name, version_of(spec)):
                response.model_version_status.add(
                    version=number,
                    state=states.Value(state.state),
                    status=status_pb2.StatusProto(
                        error_code=error_codes[state.error_code].number,
                        error_message=state.error_message,
                    ),
                )
            return response

        @guarded
        def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:  # noqa: N802
            raise ServingError(
                "UNIMPLEMENTED", "textrnn serve polls --model-base-path instead of taking configs"
            )

    return [
        (prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server, PredictionService()),
        (model_service_pb2_grpc.add_ModelServiceServicer_to_server, ModelService()),
    ]


# ----------------------------------------------------------------------------- the server


class Server:
    """The REST and gRPC front ends over one registry; `start()` loads models and binds ports."""

    def __init__(self, options: ServerOptions, echo: Any = None) -> None:
        self.options = options
        self.echo = echo or logger.info
        self.stats = Stats()
        self.executor = Executor(options, self.stats)
        self.registry = Registry(options, self.executor)
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._http: _RESTServer | None = None
        self._grpc: Any = None
        self._stopped = threading.Event()  # set once everything is shut down
        self._stop_lock = threading.Lock()
        self._stopping = False

    def start(self) -> Server:
        for line in self.registry.poll():
            self.echo(line)
        options = self.options
        if options.rest_port >= 0:
            front = RESTFrontEnd(self.registry, self.executor, options, self.stats)
            try:
                self._http = _RESTServer((options.host, options.rest_port), front)
            except OSError as error:
                front.shutdown()
                raise OSError(
                    f"cannot listen on {options.host}:{options.rest_port} (--rest-port): {error.strerror}"
                ) from None
            self.rest_port = self._http.server_address[1]
            self.executor.connections_all_waiting = self._http.all_waiting
            self._http.start()
        if options.grpc_port >= 0:
            self._start_grpc()
        self.registry.start_polling(self.echo)
        return self

    def _start_grpc(self) -> None:
        try:
            import grpc
        except ImportError:
            raise OSError(
                "gRPC needs the serving extra: pip install 'textrnn[serving]' (or pass --grpc-port -1)"
            ) from None
        options = self.options
        limit = options.max_body_bytes
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=max(8, options.num_workers), thread_name_prefix="grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        for add, servicer in _grpc_services(self.registry, self.executor, options, self.stats):
            add(servicer, self._grpc)
        host = f"[{options.host}]" if ":" in options.host else options.host
        try:
            port = self._grpc.add_insecure_port(f"{host}:{options.grpc_port}")
        except RuntimeError as error:
            port, detail = 0, first_line(error)
        else:
            detail = "address in use or not available"
        if not port:
            raise OSError(
                f"cannot listen on {options.host}:{options.grpc_port} (--grpc-port): {detail}"
            )
        self.grpc_port = port
        self._grpc.start()

    def describe(self) -> str:
        parts = []
        if self.rest_port is not None:
            parts.append(f"REST http://{self._host()}:{self.rest_port}/v1/models")
        if self.grpc_port is not None:
            parts.append(f"gRPC {self._host()}:{self.grpc_port}")
        batching = (
            f"batching on (max {self.options.max_batch_size}, timeout {self.options.batch_timeout_micros} us)"
            if self.options.enable_batching
            else "batching off"
        )
        return f"serving {self.registry.summary()} on {', '.join(parts) or 'no ports'}; {batching}"

    def _host(self) -> str:
        return f"[{self.options.host}]" if ":" in self.options.host else self.options.host

    def stop(self) -> None:
        with self._stop_lock:
            if self._stopping:
                return
            self._stopping = True
        try:
            self._shutdown()
        finally:
            self._stopped.set()

    def _shutdown(self) -> None:
        # Both front ends stop taking requests at once and answer those in flight; a
        # request cannot take longer than the request timeout (then it is answered 504).
        grace = self.options.request_timeout_ms / 1000 + 0.5
        grpc_stopped = self._grpc.stop(grace=grace) if self._grpc is not None else None
        if self._http is not None:
            self._http.shutdown(grace)
        if grpc_stopped is not None:
            grpc_stopped.wait(grace + 1)
        self.registry.stop()
        self.executor.shutdown()

    def wait(self) -> None:
        """Block until `stop()` (e.g. from a signal handler) has finished."""
        while not self._stopped.wait(0.5):
            pass


def serve(options: ServerOptions, echo: Any = print) -> None:
    """Run the server until SIGINT / SIGTERM."""
    import signal

    import tensorflow as tf

    # Fixed once TensorFlow starts: the CLI sets them before (cli.common), so this
    # is for library callers, who must call serve() before anything runs TensorFlow.
    threads = tf.config.threading
    intra, inter = options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism
    if intra not in (0, threads.get_intra_op_parallelism_threads()):
        threads.set_intra_op_parallelism_threads(intra)
    if inter not in (0, threads.get_inter_op_parallelism_threads()):
        threads.set_inter_op_parallelism_threads(inter)
    server = Server(options, echo)
    server.start()
    echo(server.describe())

    signals: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        signals.append(signum)
        if len(signals) > 1:  # a second Ctrl-C / SIGTERM: stop now, without the answers
            os._exit(128 + signum)
        threading.Thread(target=server.stop, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()


__all__ = [
    "ServerOptions",
    "Server",
    "ServingError",
    "Registry",
    "Servable",
    "Signature",
    "serve",
    "replay_warmup",
    "rows_to_arrays",
    "columns_to_arrays",
    "array_to_json",
]
