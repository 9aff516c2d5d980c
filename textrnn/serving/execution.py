"""Running signatures: model calls with a deadline, classification, warm-up replay.

The model is called once per request, or once per merged batch with
`enable_batching` (see `batching`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any

import numpy as np

from textrnn.serving.batching import Batcher, LoopTask
from textrnn.serving.codec import serialized_examples, tensor_proto_to_array
from textrnn.serving.completions import Completions
from textrnn.serving.errors import ServingError, invalid
from textrnn.serving.metrics import Stats
from textrnn.serving.options import ServerOptions
from textrnn.serving.servable import Servable
from textrnn.serving.signatures import DEFAULT_SIGNATURE, Signature

logger = logging.getLogger(__name__)

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TensorFlow Serving's limit


class Executor:
    """Runs model calls with a deadline, merged by `Batcher`s when batching is on."""

    def __init__(self, options: ServerOptions, stats: Stats) -> None:
        self.options = options
        self.stats = stats
        self.timeout = options.request_timeout_ms / 1000
        self._pool = concurrent.futures.ThreadPoolExecutor(
            options.num_workers, thread_name_prefix="model"
        )
        self._completions: dict[asyncio.AbstractEventLoop, Completions] = {}
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
        """Start one model call (merged when batching is on); a future for its outputs."""
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
            completions = self._completions.setdefault(loop, Completions(loop))
        if self._merges(signature, arrays, rows):
            task = self._batcher(servable, signature).submit(
                arrays,
                rows,
                lambda key: LoopTask(arrays, rows, key, completions, callback, self._timed_out),
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
    """Run the version's warm-up requests; return their count.

    They are the PredictionLog records in `assets.extra/tf_serving_warmup_requests`;
    like TensorFlow Serving, a warm-up request that fails fails the load.
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
