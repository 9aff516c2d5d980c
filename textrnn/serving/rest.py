"""TensorFlow Serving's REST API: the route table, status, metadata, `:predict`, `:classify`.

`http_server` runs aiohttp and hands every request to `RESTFrontEnd.dispatch`,
which finds its route in `ROUTES` and answers errors as `{"error": "..."}`
with TensorFlow Serving's status codes.

A route is `Route(method, path regex, handler)`: the regex is fullmatched
against the request's raw path (query string cut, not percent-decoded), and
`await handler(front, request, match)` returns an aiohttp response (a
`json_answer`, or a `web.StreamResponse` it prepared and wrote itself) or
raises `ServingError`. Handlers must not block the loop: model calls go
through the executor's callbacks (`run_on_loop`) or a worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np
from aiohttp import web

from textrnn.serving import playground, sse
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
from textrnn.serving.http_messages import (
    RefusedRequestError,
    answer_and_close,
    json_answer,
    parse_json_body,
    read_body,
)
from textrnn.serving.metrics import Stats
from textrnn.serving.options import ServerOptions
from textrnn.serving.registry import Registry
from textrnn.serving.servable import Servable
from textrnn.serving.signatures import DEFAULT_SIGNATURE, Signature
from textrnn.serving.streaming import Streamer

logger = logging.getLogger(__name__)

# TensorFlow Serving's REST paths (case-insensitive, as its handler matches them).
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/([^/:]+))?:(predict|classify|regress)", re.I
)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/([^/:]+))?(/metadata)?", re.I)
METRICS_PATH = re.compile(r"/monitoring/prometheus/metrics")
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


Handler = Callable[
    ["RESTFrontEnd", web.BaseRequest, "re.Match[str]"], Awaitable[web.StreamResponse]
]


@dataclass(frozen=True)
class Route:
    method: str  # "GET" or "POST"
    path: re.Pattern[str]  # fullmatched against the raw path
    handler: Handler


async def model_call(
    front: RESTFrontEnd, request: web.BaseRequest, match: re.Match[str]
) -> web.StreamResponse:
    """`POST /v1/models/{name}[/versions/{v}]:predict` (`:classify`, `:regress`).

    A small `:predict` is decoded on the loop and its model call (merged with
    others when batching is on) answers through a callback, without holding a
    thread; classify and large bodies are decoded and run on a worker thread.
    """
    body = await front.read_body(request)
    name, version, verb = unquote(match[1]), match[2], match[3].lower()
    if verb == "predict" and len(body) <= INLINE_BODY_BYTES:
        call = front._predict_call(name, version, parse_json_body(body))
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        front.executor.run_on_loop(
            call.servable,
            call.signature,
            call.arrays,
            call.rows,
            lambda outputs, error: done.set_result((outputs, error)),
        )
        outputs, error = await done
        if error is not None:
            raise error
        return json_answer(200, call.answer(outputs))
    if verb == "regress":
        raise ServingError(
            "UNIMPLEMENTED", "textrnn exports have no regression signatures; use :predict"
        )
    run = front.predict if verb == "predict" else front.classify
    return json_answer(200, await front.on_thread(run, name, version, parse_json_body(body)))


async def model_status(
    front: RESTFrontEnd, request: web.BaseRequest, match: re.Match[str]
) -> web.StreamResponse:
    """`GET /v1/models/{name}[/versions/{v}][/metadata]`."""
    if match[1] is None:
        raise invalid("Missing model name in request.")
    name, version = unquote(match[1]), match[2]
    answer = front.metadata if match[3] else front.status
    return json_answer(200, await front.on_thread(answer, name, version))


async def metrics(
    front: RESTFrontEnd, request: web.BaseRequest, match: re.Match[str]
) -> web.StreamResponse:
    """`GET /monitoring/prometheus/metrics`: the counters as Prometheus text."""
    return json_answer(200, front.stats.prometheus())


# First match wins. A new endpoint (a streaming route, a page) is one more line here.
ROUTES: tuple[Route, ...] = (
    Route("POST", PREDICT_PATH, model_call),
    Route("GET", STATUS_PATH, model_status),
    Route("GET", METRICS_PATH, metrics),
    Route("POST", sse.STREAM_PATH, sse.generate_stream),
    Route("GET", playground.PAGE_PATH, playground.page),
    Route("GET", playground.ASSET_PATH, playground.page_asset),
    Route("GET", playground.MODELS_PATH, playground.model_names),
)


class RESTFrontEnd:
    """TensorFlow Serving's REST API over a `Registry`: `dispatch` answers one request."""

    def __init__(
        self,
        registry: Registry,
        executor: Executor,
        options: ServerOptions,
        stats: Stats,
        routes: tuple[Route, ...] = ROUTES,
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.options = options
        self.stats = stats
        self.routes = routes
        self.streamer = Streamer(executor, options, stats)  # `:generate_stream`'s workers
        self.methods = sorted({route.method for route in routes})
        # Work that would block the event loop (status, metadata, classify, large bodies).
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max(4, options.num_workers), thread_name_prefix="rest"
        )

    def shutdown(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.streamer.shutdown()

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        """The answer to one request (aiohttp's handler); never raises."""
        self.stats.add(requests=1)
        method, path = request.method, request.raw_path.split("?", 1)[0]
        try:
            for route in self.routes:
                if route.method == method:
                    match = route.path.fullmatch(path)
                    if match:
                        answer = await route.handler(self, request, match)
                        break
            else:
                raise self._no_route(method, path)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - the server must survive any request
            answer = self._failure(error, method, path)
            if isinstance(error, RefusedRequestError) and error.close:
                await answer_and_close(request, answer)
        return answer

    def _no_route(self, method: str, path: str) -> ServingError:
        if method not in self.methods:
            return RefusedRequestError(
                f"method {method[:20]} not allowed; use {' or '.join(self.methods)}", 405, False
            )
        if not path.lower().startswith("/v1/"):
            return ServingError(
                "NOT_FOUND",
                f"no such endpoint: {method} {path[:200]} (the API is under /v1/models)",
            )
        return invalid(f"Malformed request: {method} {path[:200]}")

    def _failure(self, error: BaseException, method: str, path: str) -> web.Response:
        self.stats.add(errors=1)
        if isinstance(error, ServingError):
            return json_answer(error.http_status, {"error": error.message})
        if isinstance(error, ConnectionError):  # the client left mid-request: nobody to tell
            return json_answer(400, {"error": "the client disconnected"})
        if not isinstance(error, Exception):
            raise error
        logger.error("internal error on %s %s", method, path[:200], exc_info=error)
        return json_answer(
            500, {"error": f"internal error: {type(error).__name__}: {first_line(error)}"}
        )

    async def read_body(self, request: web.BaseRequest) -> bytes:
        """The request's body, within the server's --max-body-bytes."""
        options = self.options
        return await read_body(request, options.max_body_bytes, options.header_timeout_seconds)

    async def read_json(self, request: web.BaseRequest) -> dict[str, Any]:
        """The request's body as a JSON object (`ServingError` 400 if it is not one)."""
        return parse_json_body(await self.read_body(request))

    async def on_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` on a worker thread, so the event loop never blocks."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)
        except RuntimeError as error:  # the pool is shut down
            raise ServingError("UNAVAILABLE", f"the server is shutting down: {error}") from None

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
