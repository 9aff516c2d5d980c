"""`textrnn serve`: TensorFlow Serving's REST and gRPC APIs over `saved_models/`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from textrnn.cli.runner import Startup, command
from textrnn.errors import UserError


def serving_startup(arguments: dict[str, Any]) -> Startup:
    """TensorFlow's thread pools as --tensorflow-*-parallelism say (fixed once it starts)."""
    return Startup(
        initialize="TF_CONFIG" not in os.environ,
        intra_op_threads=arguments.get("tensorflow_intra_op_parallelism") or 0,
        inter_op_threads=arguments.get("tensorflow_inter_op_parallelism") or 0,
    )


def _echo(line: str) -> None:
    typer.echo(line)
    sys.stdout.flush()


# The server's own options (TensorFlow Serving's flags where it has one).
ModelBasePath = Annotated[
    Path,
    typer.Option(
        "--model-base-path",
        help="Directory of models laid out <name>/<version>/ (or one model's directory).",
    ),
]
ModelName = Annotated[
    str | None,
    typer.Option(
        "--model-name",
        help="Name to serve under when --model-base-path is one model's directory.",
    ),
]
Host = Annotated[
    str,
    typer.Option("--host", help="Address to bind; 0.0.0.0 exposes the server to the network."),
]
RestPort = Annotated[
    int, typer.Option("--rest-port", help="REST port; 0 = any free port, -1 = no REST.")
]
GrpcPort = Annotated[
    int, typer.Option("--grpc-port", help="gRPC port; 0 = any free port, -1 = no gRPC.")
]
EnableBatching = Annotated[
    bool,
    typer.Option("--enable-batching", help="Merge concurrent requests into one model call."),
]
MaxBatchSize = Annotated[
    int, typer.Option("--max-batch-size", min=1, help="Rows per merged model call.")
]
BatchTimeoutMicros = Annotated[
    int, typer.Option("--batch-timeout-micros", min=0, help="Longest wait for a batch to fill.")
]
NumBatchThreads = Annotated[
    int,
    typer.Option("--num-batch-threads", min=1, help="Batches run concurrently per signature."),
]
BatchWhenAllClientsWait = Annotated[
    bool,
    typer.Option(
        "--batch-when-all-clients-wait/--no-batch-when-all-clients-wait",
        help="Run a batch before its timeout once every keep-alive REST connection waits "
        "for an answer (no other request can come); off: always wait, as TensorFlow "
        "Serving does.",
    ),
]
MaxBodyBytes = Annotated[
    int,
    typer.Option("--max-body-bytes", min=1, help="Largest request body (REST) or message (gRPC)."),
]
MaxInstances = Annotated[
    int, typer.Option("--max-instances", min=1, help="Most examples in one request.")
]
RequestTimeoutMs = Annotated[
    int,
    typer.Option(
        "--request-timeout-ms",
        min=1,
        help="Per-request deadline (answered 504 / DEADLINE_EXCEEDED).",
    ),
]
PollSeconds = Annotated[
    float,
    typer.Option("--poll-seconds", min=0, help="How often to look for new versions; 0 = never."),
]
NumWorkers = Annotated[
    int, typer.Option("--num-workers", min=1, help="Concurrent model calls without batching.")
]
TensorflowIntraOpParallelism = Annotated[
    int,
    typer.Option(
        "--tensorflow-intra-op-parallelism",
        min=0,
        help="Threads one TensorFlow op may use; 0 = one per core. 1 suits many small "
        "concurrent calls (batching threads or workers already keep the cores busy).",
    ),
]
TensorflowInterOpParallelism = Annotated[
    int,
    typer.Option(
        "--tensorflow-inter-op-parallelism",
        min=0,
        help="Threads running independent TensorFlow ops at once; 0 = one per core.",
    ),
]
MaxHeaderBytes = Annotated[
    int,
    typer.Option(
        "--max-header-bytes",
        min=256,
        help="Longest REST request line or header line (431 beyond; at most 128 header lines).",
    ),
]
HeaderTimeoutSeconds = Annotated[
    float,
    typer.Option(
        "--header-timeout-seconds",
        min=0.001,
        help="Time a REST client has to send a request's head once it starts (then the "
        "connection closes), and the longest pause in a request body (408).",
    ),
]
IdleTimeoutSeconds = Annotated[
    float,
    typer.Option(
        "--idle-timeout-seconds",
        min=0.001,
        help="A keep-alive REST connection without a request for this long is closed.",
    ),
]
MaxConnections = Annotated[
    int,
    typer.Option(
        "--max-connections",
        min=1,
        help="Concurrent REST connections; one more is answered 503 and closed.",
    ),
]
Playground = Annotated[
    bool,
    typer.Option(
        "--playground/--no-playground",
        help="Serve the playground page at / (try the models in a browser).",
    ),
]


@command(startup=serving_startup)
def serve(
    model_base_path: ModelBasePath = Path("saved_models"),
    model_name: ModelName = None,
    host: Host = "127.0.0.1",
    rest_port: RestPort = 8501,
    grpc_port: GrpcPort = 8500,
    enable_batching: EnableBatching = False,
    max_batch_size: MaxBatchSize = 32,
    batch_timeout_micros: BatchTimeoutMicros = 1000,
    num_batch_threads: NumBatchThreads = 2,
    batch_when_all_clients_wait: BatchWhenAllClientsWait = True,
    max_body_bytes: MaxBodyBytes = 16 * 1024 * 1024,
    max_instances: MaxInstances = 10_000,
    request_timeout_ms: RequestTimeoutMs = 30_000,
    poll_seconds: PollSeconds = 1.0,
    num_workers: NumWorkers = 8,
    tensorflow_intra_op_parallelism: TensorflowIntraOpParallelism = 0,
    tensorflow_inter_op_parallelism: TensorflowInterOpParallelism = 0,
    max_header_bytes: MaxHeaderBytes = 64 * 1024,
    header_timeout_seconds: HeaderTimeoutSeconds = 50.0,
    idle_timeout_seconds: IdleTimeoutSeconds = 50.0,
    max_connections: MaxConnections = 4096,
    playground: Playground = True,
) -> None:
    """Serve every exported model under --model-base-path, as TensorFlow Serving does."""
    from textrnn import serving

    logging.basicConfig(
        level=logging.WARNING, format="textrnn serve: %(message)s", stream=sys.stderr
    )
    try:
        options = serving.ServerOptions(
            model_base_path=model_base_path,
            model_name=model_name,
            host=host,
            rest_port=rest_port,
            grpc_port=grpc_port,
            enable_batching=enable_batching,
            max_batch_size=max_batch_size,
            batch_timeout_micros=batch_timeout_micros,
            num_batch_threads=num_batch_threads,
            batch_when_all_clients_wait=batch_when_all_clients_wait,
            max_body_bytes=max_body_bytes,
            max_instances=max_instances,
            request_timeout_ms=request_timeout_ms,
            poll_seconds=poll_seconds,
            num_workers=num_workers,
            tensorflow_intra_op_parallelism=tensorflow_intra_op_parallelism,
            tensorflow_inter_op_parallelism=tensorflow_inter_op_parallelism,
            max_header_bytes=max_header_bytes,
            header_timeout_seconds=header_timeout_seconds,
            idle_timeout_seconds=idle_timeout_seconds,
            max_connections=max_connections,
            playground=playground,
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    try:
        serving.serve(options, echo=_echo)
    except (FileNotFoundError, OSError) as error:
        raise UserError(str(error)) from None
    # Everything is shut down cleanly by now; skip TensorFlow's and gRPC's slow interpreter
    # teardown (seconds) so restarts and rolling deploys are quick.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
