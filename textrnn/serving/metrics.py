"""Request and model-call counters, exported at /monitoring/prometheus/metrics."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Stats:
    """Counters behind /monitoring/prometheus/metrics (and the benchmark)."""

    requests: int = 0
    errors: int = 0
    model_calls: int = 0
    batched_rows: int = 0
    merged_requests: int = 0
    streams: int = 0  # `:generate_stream` requests that started generating
    streams_cancelled: int = 0  # ... stopped by their client leaving (or the server stopping)
    streams_active: int = 0  # ... generating now (a gauge)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def prometheus(self) -> str:
        lines = []
        for key in (
            "requests",
            "errors",
            "model_calls",
            "batched_rows",
            "merged_requests",
            "streams",
            "streams_cancelled",
        ):
            lines += [
                f"# TYPE textrnn_serving_{key}_total counter",
                f"textrnn_serving_{key}_total {getattr(self, key)}",
            ]
        lines += [
            "# TYPE textrnn_serving_streams_active gauge",
            f"textrnn_serving_streams_active {self.streams_active}",
        ]
        return "\n".join(lines) + "\n"
