"""Concurrent token streams of one language-model version, run as the rows of one batch.

A `RowScheduler` per version (exports with the `prime` and `generate_rows`
signatures) owns one thread that loops while streams are open:

1. it takes the streams that arrived (up to the largest batch size the export
   was warmed up for, `rows_batch_sizes` in its manifest; later ones wait
   their turn) and reads all their prompts in one `prime` call;
2. it continues every open stream in one `generate_rows` call: each row at its
   own decoding step, with its own knobs and seed (row 0 of `generate`, the
   noise `:predict` draws for a one-prompt request), so each stream's text is
   exactly what `:predict` answers for its seed, whoever shares the batch;
   rows are padded to the next warmed-up batch size (XLA compiles per size);
3. it hands each stream its new text and ends the streams that are done.

Chunks grow while a stream runs: its first call takes 1 token (the first
piece shows as soon as the prompt is read), then 2, 4, ... up to the export's
`rows_capacity` (64). A call takes as many tokens as its most advanced row
wants, so with many streams open nearly every call runs 64 steps for all of
them (a new stream's first piece then waits for one such call), and with one
stream the first token comes after two short calls.

A row sends only a window of its ids as `previous` (`decoding.stream_text`), so
a call's detokenizing cost does not grow with the stream's length; when windows
are due to move, one `detokenize` call gives the new windows' texts.

Between calls the thread drops streams whose client left (`cancelled`) and
ends those past their deadline, so a stream costs nothing once it is gone.
The merged calls run on this thread, not through the `Executor` (they are a
batch already); other requests keep the executor's workers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from textrnn.decoding.stream_text import StreamText
from textrnn.serving.errors import ServingError, first_line
from textrnn.serving.metrics import Stats
from textrnn.serving.servable import Servable

if TYPE_CHECKING:
    from textrnn.serving.streaming import TokenStream

ROW_SIGNATURES = ("prime", "generate_rows", "detokenize")
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_CAPACITY = 64
EOS_ID = 3  # textrnn.tokenizers.EOS_ID (not imported: the server loads no task code)


class StreamCancelledError(Exception):
    """The stream was cancelled (the client left, or the server stops)."""


@dataclass
class _Row:
    """One open stream's place in the batch: where its generation stands."""

    stream: TokenStream
    logits: np.ndarray  # (vocabulary,) the next token's
    states: np.ndarray  # (num_states, units)
    text: StreamText  # its ids (without [EOS]), their text, and what was sent
    size: int = 1  # tokens the next call takes for it

    @property
    def remaining(self) -> int:
        return self.stream.options.max_tokens - len(self.text)


class RowScheduler:
    """Runs the open streams of one version as rows of one batched call per chunk."""

    def __init__(self, servable: Servable, manifest: dict[str, Any], stats: Stats) -> None:
        self.prime = servable.signature("prime")
        self.generate_rows = servable.signature("generate_rows")
        self.detokenize = servable.signature("detokenize")
        self.batch_sizes = tuple(manifest.get("rows_batch_sizes", DEFAULT_BATCH_SIZES))
        self.capacity = int(manifest.get("rows_capacity", DEFAULT_CAPACITY))
        self.max_rows = max(self.batch_sizes)
        self.stats = stats
        self._condition = threading.Condition()
        self._waiting: deque[TokenStream] = deque()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._name = f"stream-rows-{servable.name}-{servable.version}"

    def add(self, stream: TokenStream) -> None:
        """Queue a stream; the thread starts it at its next call (or now, if idle)."""
        with self._condition:
            if self._stopped:
                raise ServingError("UNAVAILABLE", "the server is shutting down")
            self._waiting.append(stream)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def stop(self, wait: bool = False) -> None:
        """Cancel every stream (the server stops): the thread ends them and itself at its
        next turn (`wait`: wait for that)."""
        with self._condition:
            self._stopped = True
            thread = self._thread
        if wait and thread is not None:
            thread.join()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        rows: list[_Row] = []
        try:
            while True:
                with self._condition:
                    if self._stopped:
                        for stream in [row.stream for row in rows] + list(self._waiting):
                            stream.cancel()
                    rows = [row for row in rows if self._still_open(row.stream)]
                    if not rows and not self._waiting:
                        self._thread = None  # `add` starts a new one
                        return
                    arrived = self._admit(self.max_rows - len(rows))
                if arrived:
                    rows += self._start(arrived)
                if rows:
                    rows = self._advance(rows)
        except BaseException as error:  # noqa: BLE001 - a bug here must not leave streams hanging
            failure = ServingError("INTERNAL", f"{type(error).__name__}: {first_line(error)}")
            with self._condition:
                waiting, self._waiting = list(self._waiting), deque()
                self._thread = None
            for stream in [row.stream for row in rows] + waiting:
                stream.finish("error", failure)
            raise

    def _admit(self, room: int) -> list[TokenStream]:
        """Up to `room` waiting streams still worth starting (under the lock)."""
        arrived = []
        kept: deque[TokenStream] = deque()
        for stream in self._waiting:
            if not self._still_open(stream):
                continue
            (arrived if len(arrived) < room else kept).append(stream)
        self._waiting = kept
        return arrived

    def _still_open(self, stream: TokenStream) -> bool:
        """False (and the stream ended) when its client left or its deadline passed."""
        if stream.cancelled.is_set():
            stream.finish(None, None)
            return False
        if time.monotonic() >= stream.deadline:
            stream.finish("error", stream.deadline_error())
            return False
        return True

    def _start(self, streams: list[TokenStream]) -> list[_Row]:
        """Read the prompts of `streams` in one `prime` call: their rows."""
        empty = [s for s in streams if s.options.max_tokens == 0]
        for stream in empty:
            stream.finish("done", {"text": "", "tokens": 0, "seed": stream.seed})
        streams = [s for s in streams if s.options.max_tokens > 0]
        if not streams:
            return []
        prompts = np.empty(len(streams), dtype=object)
        prompts[:] = [s.prompt.encode("utf-8") for s in streams]
        outputs = self._call(self.prime, {"prompt": prompts}, streams)
        if outputs is None:
            return []
        return [
            _Row(stream, outputs["logits"][i], outputs["states"][i], StreamText())
            for i, stream in enumerate(streams)
        ]

    def _advance(self, rows: list[_Row]) -> list[_Row]:
        """One `generate_rows` call for all `rows`; the rows still open after it."""
        size = min(max(row.size for row in rows), self.capacity)
        arrays = self._batch(rows, size)
        outputs = self._call(self.generate_rows, arrays, [row.stream for row in rows])
        if outputs is None:
            return []
        open_rows = []
        for index, row in enumerate(rows):
            count = int(outputs["num_tokens"][index])
            ids = outputs["token_ids"][index, :count]
            stopped = count > 0 and ids[-1] == EOS_ID
            row.text.extend(ids[: count - int(stopped)])
            row.logits, row.states = outputs["logits"][index], outputs["states"][index]
            row.size = min(row.size * 2, self.capacity)
            if not self._deliver(row, outputs["text"][index]):
                continue
            if stopped or not row.remaining:
                done = {"text": row.text.shown, "tokens": len(row.text), "seed": row.stream.seed}
                row.stream.finish("done", done)
            else:
                open_rows.append(row)
        return self._move_windows(open_rows)

    def _move_windows(self, rows: list[_Row]) -> list[_Row]:
        """Move the windows that are due, with one `detokenize` call for all of them; the
        rows still open after it."""
        moving = [row for row in rows if row.text.move_due]
        if not moving:
            return rows
        token_ids = np.asarray([row.text.move_ids for row in moving], np.int32)
        outputs = self._call(self.detokenize, {"token_ids": token_ids}, [r.stream for r in moving])
        if outputs is None:  # those streams ended with the error
            return [row for row in rows if not row.text.move_due]
        for row, text in zip(moving, outputs["text"], strict=True):
            row.text.move(text.decode("utf-8", errors="replace"))
        return rows

    def _batch(self, rows: list[_Row], size: int) -> dict[str, np.ndarray]:
        """The inputs of one call, padded to the next warmed-up batch size with rows that
        take no tokens."""
        batch = next((b for b in self.batch_sizes if b >= len(rows)), len(rows))
        pad = batch - len(rows)

        def column(values: list[Any], dtype: Any, fill: Any) -> np.ndarray:
            return np.asarray(values + [fill] * pad, dtype)

        def stacked(values: list[np.ndarray]) -> np.ndarray:
            array = np.stack(values)
            return np.concatenate([array, np.zeros((pad, *array.shape[1:]), array.dtype)])

        tails = [row.text.tail for row in rows]
        previous = np.zeros([batch, max(len(tail) for tail in tails)], np.int32)
        for index, tail in enumerate(tails):
            previous[index, : len(tail)] = tail
        options = [row.stream.options for row in rows]
        return {
            "logits": stacked([row.logits for row in rows]),
            "states": stacked([row.states for row in rows]),
            "start": column([len(row.text) for row in rows], np.int32, 0),
            "tokens": column([min(size, row.remaining) for row in rows], np.int32, 0),
            "temperature": column([o.temperature for o in options], np.float32, 1.0),
            "top_k": column([o.top_k for o in options], np.int32, 0),
            "top_p": column([o.top_p for o in options], np.float32, 1.0),
            "seed": column([row.stream.seed for row in rows], np.int64, 0),
            "row": np.zeros([batch], np.int32),  # a stream is row 0 of a `generate` request
            "previous": previous,
        }

    def _call(
        self, signature: Any, arrays: dict[str, np.ndarray], streams: list[TokenStream]
    ) -> dict[str, np.ndarray] | None:
        """Run one merged call; on failure end `streams` with the error and return None."""
        try:
            outputs = signature.run(arrays)
        except ServingError as error:
            failure = error
        except Exception as error:  # noqa: BLE001 - reported to the streams as their end
            failure = ServingError("INTERNAL", f"{type(error).__name__}: {first_line(error)}")
        else:
            self.stats.add(model_calls=1, batched_rows=len(streams), merged_requests=len(streams))
            return outputs
        for stream in streams:
            stream.finish("error", failure)
        return None

    def _deliver(self, row: _Row, tail_text: bytes) -> bool:
        """Send the row's new text (`tail_text`: the text of its window); False when its
        client is gone."""
        piece = row.text.update(tail_text.decode("utf-8", errors="replace"))
        if not piece:
            return True
        try:
            row.stream.put("piece", piece)
        except StreamCancelledError:
            row.stream.finish(None, None)
            return False
        return True
