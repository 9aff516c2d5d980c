"""The server: REST and gRPC front ends over one registry; start, stop, signals."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import threading
from typing import Any

from textrnn.serving.errors import first_line
from textrnn.serving.execution import Executor
from textrnn.serving.metrics import Stats
from textrnn.serving.options import ServerOptions
from textrnn.serving.registry import Registry

logger = logging.getLogger(__name__)


class Server:
    """The REST and gRPC front ends over one registry; `start()` loads models and binds ports."""

    def __init__(self, options: ServerOptions, echo: Any = None) -> None:
        self.options = options
        self.echo = echo or logger.info
        self.stats = Stats()
        self.executor = Executor(options, self.stats)
        self.registry = Registry(options, self.executor)
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._http: Any = None  # http_server.RESTServer
        self._grpc: Any = None
        self._stopped = threading.Event()  # set once everything is shut down
        self._stop_lock = threading.Lock()
        self._stopping = False

    def start(self) -> Server:
        for line in self.registry.poll():
            self.echo(line)
        options = self.options
        if options.rest_port >= 0:
            front_class, server_class = _rest_classes()
            front = front_class(self.registry, self.executor, options, self.stats)
            try:
                self._http = server_class((options.host, options.rest_port), front)
            except OSError as error:
                front.shutdown()
                raise OSError(
                    f"cannot listen on {options.host}:{options.rest_port} (--rest-port): "
                    f"{error.strerror}"
                ) from None
            self.rest_port = self._http.server_address[1]
            self.executor.connections_all_waiting = self._http.all_waiting
            self._http.start()
        if options.grpc_port >= 0:
            self._start_grpc()
        self.registry.start_polling(self.echo)
        return self

    def _start_grpc(self) -> None:
        try:
            import grpc
        except ImportError:
            raise OSError(
                "gRPC needs the serving extra: pip install 'textrnn[serving]' "
                "(or pass --grpc-port -1)"
            ) from None
        options = self.options
        limit = options.max_body_bytes
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=max(8, options.num_workers), thread_name_prefix="grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        from textrnn.serving import grpc_api  # grpc and its protos: only with a gRPC port

        grpc_api.add_services(self._grpc, self.registry, self.executor, options, self.stats)
        host = f"[{options.host}]" if ":" in options.host else options.host
        try:
            port = self._grpc.add_insecure_port(f"{host}:{options.grpc_port}")
        except RuntimeError as error:
            port, detail = 0, first_line(error)
        else:
            detail = "address in use or not available"
        if not port:
            raise OSError(
                f"cannot listen on {options.host}:{options.grpc_port} (--grpc-port): {detail}"
            )
        self.grpc_port = port
        self._grpc.start()

    def describe(self) -> str:
        parts = []
        if self.rest_port is not None:
            parts.append(f"REST http://{self._host()}:{self.rest_port}/v1/models")
        if self.grpc_port is not None:
            parts.append(f"gRPC {self._host()}:{self.grpc_port}")
        options = self.options
        batching = (
            f"batching on (max {options.max_batch_size}, timeout {options.batch_timeout_micros} us)"
            if options.enable_batching
            else "batching off"
        )
        return f"serving {self.registry.summary()} on {', '.join(parts) or 'no ports'}; {batching}"

    def _host(self) -> str:
        return f"[{self.options.host}]" if ":" in self.options.host else self.options.host

    def stop(self) -> None:
        with self._stop_lock:
            if self._stopping:
                return
            self._stopping = True
        try:
            self._shutdown()
        finally:
            self._stopped.set()

    def _shutdown(self) -> None:
        # Both front ends stop taking requests at once and answer those in flight; a
        # request cannot take longer than the request timeout (then it is answered 504).
        grace = self.options.request_timeout_ms / 1000 + 0.5
        grpc_stopped = self._grpc.stop(grace=grace) if self._grpc is not None else None
        if self._http is not None:
            self._http.shutdown(grace)
        if grpc_stopped is not None:
            grpc_stopped.wait(grace + 1)
        self.registry.stop()
        self.executor.shutdown()

    def wait(self) -> None:
        """Block until `stop()` (e.g. from a signal handler) has finished."""
        while not self._stopped.wait(0.5):
            pass


def _rest_classes() -> tuple[Any, Any]:
    """`rest.RESTFrontEnd` and `http_server.RESTServer` (aiohttp: imported for a REST port)."""
    try:
        from textrnn.serving.http_server import RESTServer
        from textrnn.serving.rest import RESTFrontEnd
    except ImportError as error:
        raise OSError(
            f"REST needs the serving extra ({error.name} is missing): "
            "pip install 'textrnn[serving]' (or pass --rest-port -1)"
        ) from None
    return RESTFrontEnd, RESTServer


def serve(options: ServerOptions, echo: Any = print) -> None:
    """Run the server until SIGINT / SIGTERM."""
    import tensorflow as tf

    # Fixed once TensorFlow starts: the CLI sets them before (cli.runner), so this
    # is for library callers, who must call serve() before anything runs TensorFlow.
    threads = tf.config.threading
    intra, inter = options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism
    if intra not in (0, threads.get_intra_op_parallelism_threads()):
        threads.set_intra_op_parallelism_threads(intra)
    if inter not in (0, threads.get_inter_op_parallelism_threads()):
        threads.set_inter_op_parallelism_threads(inter)
    server = Server(options, echo)
    server.start()
    echo(server.describe())
    if options.playground and server.rest_port is not None:
        echo(f"playground: open http://{server._host()}:{server.rest_port}/ in a browser")

    signals: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        signals.append(signum)
        if len(signals) > 1:  # a second Ctrl-C / SIGTERM: stop now, without the answers
            os._exit(128 + signum)
        threading.Thread(target=server.stop, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
