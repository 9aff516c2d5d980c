"""Token streaming for language-model exports: the transport-independent core of
`:generate_stream`.

`Streamer.open(servable, body)` checks the request (the `generate` knobs, and
that the version can stream) and raises `ServingError` before anything is
sent, so a bad knob is a 400 and not a broken stream. The returned
`TokenStream` is generated one of two ways, with the same seeds either way:
the streamed text is the text `:predict` on `generate` answers for the same
seed (row 0 of its batch).

- Exports with `prime` and `generate_rows`: the version's `RowScheduler`
  (`stream_rows`) runs every open stream as a row of one batched call per
  chunk, on one thread.
- Older exports: a worker thread per stream runs
  `language_model.inference.stream_tokens`: the prompt through `step`, then
  chunks of tokens through `generate_chunk` (or, older still, token by token
  through `step` / `detokenize`). Those calls go through the server's
  `Executor`, so they keep `--num-workers` (and, with `--enable-batching`,
  the per-token `step` calls merge with other streams').

The consumer (on the event loop) reads `await stream.next_event()`: pieces
as they come (pieces queued while the client was slow go out as one event),
then the `done` event; a failure is raised as its `ServingError`.
`stream.cancel()` (the client left) stops the work before its next model
call; the request timeout bounds the whole stream.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from textrnn.serving.errors import ServingError, first_line, invalid
from textrnn.serving.execution import Executor
from textrnn.serving.metrics import Stats
from textrnn.serving.options import ServerOptions
from textrnn.serving.servable import Servable
from textrnn.serving.stream_rows import ROW_SIGNATURES, RowScheduler, StreamCancelledError

STREAM_SIGNATURES = ("tokenize", "step", "detokenize")
# A stream holds one worker thread while it generates; more concurrent streams wait for one.
MAX_STREAM_THREADS = 64
MAX_PIECES = 16  # queued pieces sent as one event when the client reads slower
MANIFEST_PATH = Path("assets.extra") / "textrnn.json"
# The body's fields: (JSON type check, what the error says it must be).
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "prompt": (lambda v: type(v) is str, "a string"),
    "max_tokens": (lambda v: type(v) is int, "an integer"),
    "temperature": (lambda v: type(v) in (int, float), "a number"),
    "top_k": (lambda v: type(v) is int, "an integer"),
    "top_p": (lambda v: type(v) in (int, float), "a number"),
    "seed": (lambda v: v is None or type(v) is int, "an integer or null"),
}


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event: `kind` is "piece", "done" or "error"; `data` its JSON object."""

    kind: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        """SSE framing: an `event:` line (but for pieces, the default "message"), `data:`."""
        head = "" if self.kind == "piece" else f"event: {self.kind}\n"
        return f"{head}data: {json.dumps(self.data, ensure_ascii=False)}\n\n".encode()


def parse_request(body: dict[str, Any], manifest: dict[str, Any]) -> tuple[str, Any]:
    """`(prompt, GenerationOptions)` from a request body; `ServingError` (400) naming the field."""
    from textrnn.decoding.sampling import MAX_TOKENS_CAP
    from textrnn.language_model.inference import GenerationOptions

    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise invalid(
            f"unknown field(s) {', '.join(map(repr, unknown))}; a :generate_stream body takes "
            + ", ".join(FIELDS)
        )
    if "prompt" not in body:
        raise invalid("missing 'prompt': the text to continue, one string")
    for key, value in body.items():
        check, kind = FIELDS[key]
        if not check(value):
            raise invalid(f"'{key}' must be {kind}, got {json.dumps(value)[:80]}")
    defaults = GenerationOptions()
    options = GenerationOptions(
        max_tokens=body.get("max_tokens", defaults.max_tokens),
        temperature=float(body.get("temperature", defaults.temperature)),
        top_k=body.get("top_k", defaults.top_k),
        top_p=float(body.get("top_p", defaults.top_p)),
        seed=body.get("seed"),
    )
    cap = int(manifest.get("max_tokens_cap", MAX_TOKENS_CAP))
    vocabulary_size = int(manifest.get("tokenizer", {}).get("vocabulary_size", 0))
    if not 0 <= options.max_tokens <= cap:
        raise invalid(f"'max_tokens' must be in [0, {cap}], got {options.max_tokens}")
    if not (options.temperature >= 0 and math.isfinite(options.temperature)):
        raise invalid("'temperature' must be a finite number >= 0 (0 is greedy)")
    if not 0 <= options.top_k <= vocabulary_size:
        raise invalid(
            f"'top_k' must be in [0, {vocabulary_size}] (the vocabulary size; 0 is off), "
            f"got {options.top_k}"
        )
    if not 0.0 < options.top_p <= 1.0:
        raise invalid(f"'top_p' must be in (0, 1] (1 is off), got {options.top_p}")
    if options.seed is not None and not -(2**63) <= options.seed < 2**63:
        raise invalid("'seed' must fit in 64 bits")
    return body["prompt"], options


@lru_cache(maxsize=128)
def read_manifest(version_path: Path) -> dict[str, Any]:
    """A version's `assets.extra/textrnn.json` (versions never change once served)."""
    try:
        return json.loads((version_path / MANIFEST_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class Streamer:
    """Opens token streams for one server: their worker threads and their count."""

    def __init__(self, executor: Executor, options: ServerOptions, stats: Stats) -> None:
        self.executor = executor
        self.timeout = options.request_timeout_ms / 1000
        self.stats = stats
        self._threads = concurrent.futures.ThreadPoolExecutor(
            MAX_STREAM_THREADS, thread_name_prefix="stream"
        )
        # One per version that merges its streams; gone with the version.
        self._schedulers: weakref.WeakKeyDictionary[Servable, RowScheduler] = (
            weakref.WeakKeyDictionary()
        )
        self._schedulers_lock = threading.Lock()

    def open(self, servable: Servable, body: dict[str, Any]) -> TokenStream:
        """Check the request and start generating; call on the event loop."""
        missing = [name for name in STREAM_SIGNATURES if name not in servable.signatures]
        if missing:
            raise ServingError(
                "FAILED_PRECONDITION",
                f"model {servable.name!r} version {servable.version} cannot stream: "
                ":generate_stream needs a language-model export (signatures "
                f"{', '.join(STREAM_SIGNATURES)}; it lacks {', '.join(missing)})",
            )
        manifest = read_manifest(servable.path)
        prompt, options = parse_request(body, manifest)
        stream = TokenStream(self, servable, manifest, prompt, options)
        self.stats.add(streams=1, streams_active=1)
        try:
            if all(name in servable.signatures for name in ROW_SIGNATURES):
                self._scheduler(servable, manifest).add(stream)
            else:
                self._threads.submit(stream.run)
        except (RuntimeError, ServingError):  # shut down: the server is stopping
            self._finished(cancelled=True)
            raise ServingError("UNAVAILABLE", "the server is shutting down") from None
        return stream

    def _scheduler(self, servable: Servable, manifest: dict[str, Any]) -> RowScheduler:
        with self._schedulers_lock:
            scheduler = self._schedulers.get(servable)
            if scheduler is None:
                scheduler = RowScheduler(servable, manifest, self.stats)
                self._schedulers[servable] = scheduler
            return scheduler

    def _finished(self, cancelled: bool) -> None:
        self.stats.add(streams_active=-1, streams_cancelled=int(cancelled))

    def shutdown(self, wait: bool = False) -> None:
        with self._schedulers_lock:
            schedulers = list(self._schedulers.values())
        for scheduler in schedulers:
            scheduler.stop(wait)
        self._threads.shutdown(wait=wait, cancel_futures=True)


class _StepClient:
    """What `stream_tokens` calls: the version's `tokenize` / `detokenize` as they are, and
    `generate_chunk` (or, for exports without it, `step`) through the executor, checking
    the stream's cancellation and deadline first."""

    def __init__(self, stream: TokenStream) -> None:
        loaded = stream.servable.loaded.signatures
        self.manifest = stream.manifest
        self.signatures = {"tokenize": loaded["tokenize"], "detokenize": loaded["detokenize"]}
        self._stream = stream
        # `step` reads the prompt; `generate_chunk` (in exports that have it) generates.
        for name in ("step", "generate_chunk"):
            if name in stream.servable.signatures:
                self.signatures[name] = partial(self._call, stream.servable.signature(name))

    def _call(self, signature: Any, **inputs: Any) -> dict[str, np.ndarray]:
        stream = self._stream
        if stream.cancelled.is_set():
            raise StreamCancelledError
        remaining = stream.deadline - time.monotonic()
        if remaining <= 0:
            raise stream.deadline_error()
        arrays = {name: np.asarray(value) for name, value in inputs.items()}
        streamer = stream.streamer
        if streamer.stats.streams_active == 1:
            # The only stream: nothing to merge with, so no batch wait and no thread hop.
            outputs = signature.run(arrays)
            streamer.stats.add(model_calls=1, batched_rows=1, merged_requests=1)
            return outputs
        return streamer.executor.run(stream.servable, signature, arrays, 1, remaining)


class TokenStream:
    """One `:generate_stream` request: a worker generating, pieces queued for the loop."""

    def __init__(
        self,
        streamer: Streamer,
        servable: Servable,
        manifest: dict[str, Any],
        prompt: str,
        options: Any,
    ) -> None:
        self.streamer = streamer
        self.servable = servable
        self.manifest = manifest
        self.prompt = prompt
        self.seed = options.resolved_seed()  # drawn here, so `done` can say which one
        self.options = options
        self.deadline = time.monotonic() + streamer.timeout
        self.cancelled = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._items: deque[tuple[str, Any]] = deque()  # touched on the loop only
        self._arrived = asyncio.Event()
        self._ended = False
        self._finished = False  # counted as ended (by `finish`, once)

    def cancel(self) -> None:
        """Stop generating before the next model call (the client left)."""
        self.cancelled.set()

    def deadline_error(self) -> ServingError:
        return ServingError(
            "DEADLINE_EXCEEDED",
            "Deadline exceeded: the stream took longer than "
            f"{self.streamer.timeout * 1000:.0f} ms (the server's --request-timeout-ms)",
        )

    # ------------------------------------------------------------------ the worker thread

    def run(self) -> None:
        """Generate on this worker thread (exports without `generate_rows`), queueing each
        piece for the loop, then `done` (or the failure)."""
        try:
            self.finish("done", self._generate())
        except StreamCancelledError:
            self.finish(None, None)  # the client is gone: nobody to tell
        except ServingError as error:
            self.finish("error", error)
        except Exception as error:  # noqa: BLE001 - reported to the client as the stream's end
            message = f"{type(error).__name__}: {first_line(error)}"
            self.finish("error", ServingError("INTERNAL", message))

    def finish(self, kind: str | None, value: Any) -> None:
        """End the stream once: queue `done` or `error` (`kind` None: it was cancelled,
        nobody to tell) and count it as ended."""
        if self._finished:
            return
        self._finished = True
        cancelled = kind is None
        if not cancelled:
            try:
                self.put(kind, value)
            except StreamCancelledError:
                cancelled = True
        self.streamer._finished(cancelled=cancelled)

    def _generate(self) -> dict[str, Any]:
        """Queue the pieces; the `done` event's data."""
        from dataclasses import replace

        from textrnn.language_model.inference import stream_tokens

        pieces: list[str] = []
        options = replace(self.options, seed=self.seed)
        generator = stream_tokens(_StepClient(self), self.prompt, options)
        while True:
            try:
                piece = next(generator)
            except StopIteration as stop:
                return {"text": "".join(pieces), "tokens": stop.value, "seed": self.seed}
            pieces.append(piece)
            self.put("piece", piece)

    def put(self, kind: str, value: Any) -> None:
        """Queue an event for the loop (from the generating thread); `StreamCancelledError` once
        the client is gone."""
        if self.cancelled.is_set():
            raise StreamCancelledError
        try:
            self._loop.call_soon_threadsafe(self._deliver, kind, value)
        except RuntimeError:  # the loop is closed: the server stopped
            self.cancelled.set()
            raise StreamCancelledError from None

    # ------------------------------------------------------------------ the event loop

    def _deliver(self, kind: str, value: Any) -> None:
        self._items.append((kind, value))
        self._arrived.set()

    async def next_event(self) -> StreamEvent | None:
        """The next event (queued pieces merged into one), the `done` event, then None.

        The stream's failure (a deadline, a model error) is raised as its
        `ServingError`: before anything was sent the caller answers it as an HTTP
        error, after that as an `error` event.
        """
        if self._ended:
            return None
        while not self._items:
            self._arrived.clear()
            remaining = self.deadline - time.monotonic() + 1.0  # the worker's check comes first
            try:
                await asyncio.wait_for(self._arrived.wait(), max(remaining, 0.001))
            except asyncio.TimeoutError:
                self.cancel()
                self._ended = True
                raise self.deadline_error() from None
        kind, value = self._items.popleft()
        if kind == "piece":
            text = [value]
            while self._items and self._items[0][0] == "piece" and len(text) < MAX_PIECES:
                text.append(self._items.popleft()[1])
            return StreamEvent("piece", {"text": "".join(text)})
        self._ended = True
        if kind == "error":
            raise value
        return StreamEvent("done", value)
