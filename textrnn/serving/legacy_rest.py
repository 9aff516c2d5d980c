"""TensorFlow Serving's REST API: routing, status, metadata, `:predict` and `:classify`.

Transport-independent: `http_transport` parses HTTP and hands each request to
`RESTFrontEnd`. Errors are `{"error": "..."}` with TensorFlow Serving's
status codes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np

from textrnn.serving.codec import (
    classification_json,
    columns_to_arrays,
    example_from_json,
    outputs_json,
    predictions_json,
    rows_to_arrays,
)
from textrnn.serving.errors import ServingError, first_line, invalid
from textrnn.serving.execution import Executor, classify
from textrnn.serving.metrics import Stats
from textrnn.serving.options import ServerOptions
from textrnn.serving.registry import Registry
from textrnn.serving.servable import Servable
from textrnn.serving.signatures import DEFAULT_SIGNATURE, Signature

logger = logging.getLogger(__name__)

# TensorFlow Serving's REST paths (case-insensitive, as its handler matches them).
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/([^/:]+))?:(predict|classify|regress)", re.I
)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/([^/:]+))?(/metadata)?", re.I)
METRICS_PATH = "/monitoring/prometheus/metrics"
# `:predict` bodies up to this size are decoded on the REST event loop; larger ones on a thread.
INLINE_BODY_BYTES = 64 * 1024


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
                "the request must hold exactly one of 'instances' (row format) "
                "or 'inputs' (columnar format)"
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
                repeated = sorted(set(example) & set(context))
                raise invalid(f"example {position} repeats context feature(s) {repeated}")
            merged = {**context, **example} if type(example) is dict else example
            serialized.append(example_from_json(merged, f"example {position}").SerializeToString())
        classes, scores = classify(servable, signature_name, serialized, self.executor)
        return {"result": classification_json(classes, scores, len(serialized))}

    def _too_many(self, count: int) -> ServingError:
        return invalid(
            f"too many instances: {count} > {self.options.max_instances} "
            "(the server's --max-instances)"
        )


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
