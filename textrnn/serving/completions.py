"""Handing finished model calls to an asyncio event loop, with the request deadline."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from typing import Any, Protocol


class Expiring(Protocol):
    """A request waiting on the loop: a `batching.LoopTask` or a `_Watched` pool future."""

    callback: Any  # None once answered

    def expire(self) -> None: ...


class _Watched:
    """A pool future watched by `Completions`: `callback(future)` or `expired()`, once."""

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


class Completions:
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
        self._deadlines: deque[tuple[float, Expiring]] = deque()  # submission order
        self._sweeper: asyncio.TimerHandle | None = None

    def expect(self, task: Expiring, timeout: float) -> None:
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
