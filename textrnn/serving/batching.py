"""Merging concurrent compatible requests into one model call, as TensorFlow Serving does.

With `enable_batching`, concurrent requests for one signature whose inputs
share inner shapes are concatenated, run as one call and split again; each
request gets its own rows back.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from textrnn.serving.codec import BatchOutputs
from textrnn.serving.completions import Completions
from textrnn.serving.errors import ServingError
from textrnn.serving.metrics import Stats
from textrnn.serving.signatures import Signature

logger = logging.getLogger(__name__)


class _Task(concurrent.futures.Future):
    """One request waiting in a `Batcher`: a future for its outputs."""

    def __init__(self, arrays: dict[str, np.ndarray], rows: int, key: tuple) -> None:
        super().__init__()
        self.arrays = arrays
        self.rows = rows
        self.key = key
        self.enqueued = 0.0  # time.monotonic() when queued


class LoopTask:
    """One request waiting in a `Batcher` on behalf of the REST event loop.

    A lean stand-in for `_Task`'s future: one object per request (no condition
    variable, callback list, closures or timer of its own), answered on the
    loop through `Completions`, which also expires it. The batch thread calls
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
        completions: Completions,
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
    def deliver_all(tasks: list[LoopTask]) -> None:
        """Hand finished tasks (their `result` set) to their loops in one go.

        The whole batch is answered in one pass of the loop, so no client of
        it can send again while others still wait for answers already computed
        (which would make `Executor.all_waiting` run a part-batch early).
        """
        by_loop: dict[int, list[LoopTask]] = {}
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
    ) -> _Task | LoopTask:
        """Queue a request: a `_Task` future, or `loop_task(key)` (a `LoopTask`) if given."""
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
                        if type(task) is LoopTask:
                            task.result = shared.rows(start, end)
                            on_loops.append(task)
                        else:
                            task.set_result(shared.rows(start, end))
                        start = end
                    LoopTask.deliver_all(on_loops)
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
