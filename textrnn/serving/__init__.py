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
  version, 413 body too large, 431 header line too long, 504 deadline exceeded).
- textrnn's own: `POST .../{name}[/versions/{v}]:generate_stream` (a language
  model's text as server-sent events) and the playground page at `GET /`.
- gRPC: `PredictionService` (`Predict`, `Classify`, `GetModelMetadata`) and
  `ModelService.GetModelStatus`, from the `tensorflow-serving-api` protos.

One module per concern, each importing only those above it:

- `errors`, `options`, `metrics`: request errors, `ServerOptions`, counters;
- `signatures`: a version's signatures with their specs resolved once;
- `codec`: JSON (row and columnar formats), tf.Examples and TensorProtos <-> arrays;
- `completions`, `batching`: answering on the event loop; merging requests;
- `servable`, `execution`, `registry`: a loaded version; model calls with a
  deadline and warm-up replay; the versions on disk and the poller;
- `http_messages`, `rest`, `http_server`, `grpc_api`: the front ends (REST: request
  bodies and JSON answers; the route table and the API; aiohttp's server with
  textrnn's limits);
- `stream_rows`, `streaming`: token streams (concurrent streams of a version as rows of
  one batched call; knobs checked first);
- `sse`, `playground/`: the `:generate_stream` route and the page, rows of `rest.ROUTES`;
- `server`: `Server` and `serve()`, start, stop and signals.
"""

from textrnn.serving.codec import array_to_json, columns_to_arrays, rows_to_arrays
from textrnn.serving.errors import ServingError, first_line
from textrnn.serving.execution import replay_warmup
from textrnn.serving.options import ServerOptions
from textrnn.serving.registry import Registry
from textrnn.serving.servable import Servable
from textrnn.serving.server import Server, serve
from textrnn.serving.signatures import Signature

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
    "first_line",
]
