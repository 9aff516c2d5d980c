"""The options of `textrnn serve`, validated once; the server binds to 127.0.0.1 unless told."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


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
    # The REST server's HTTP limits. TensorFlow Serving's REST server runs on libevent's
    # evhttp, which times a connection out after 50 s without reading (a request's head, or
    # the next request); it caps neither headers nor connections, which textrnn does.
    max_header_bytes: int = 64 * 1024  # the longest request line or header line (431 beyond)
    header_timeout_seconds: float = 50.0  # to send a request's head, or a pause in its body
    idle_timeout_seconds: float = 50.0  # a keep-alive connection with no request is closed
    max_connections: int = 4096  # concurrent REST connections; more are answered 503, closed
    playground: bool = True  # GET / serves the playground page (--no-playground: off)

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
            ("max_header_bytes", 256),
            ("max_connections", 1),
        ):
            if getattr(self, name) < minimum:
                option = "--" + name.replace("_", "-")
                raise ValueError(f"{option} must be >= {minimum}, got {getattr(self, name)}")
        for name in ("rest_port", "grpc_port"):
            if not -1 <= getattr(self, name) <= 65535:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a port (0 = any free port, -1 = off)"
                )
        for name in ("header_timeout_seconds", "idle_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0")
        if self.poll_seconds < 0:
            raise ValueError("--poll-seconds must be >= 0")
        if self.model_name is not None and not valid_model_name(self.model_name):
            raise ValueError(
                f"--model-name {self.model_name!r} may only hold letters, digits, '_', '.', '-'"
            )


def valid_model_name(name: str) -> bool:
    return bool(MODEL_NAME.fullmatch(name)) and ".." not in name
