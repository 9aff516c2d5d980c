"""Options and helpers shared by every command.

Commands stay a few lines: parse options, call one library function, print.
`command` turns `UserError` into one line on stderr and exit code 2, and any
other exception into one line and exit code 1 (a traceback with `--debug`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from textrnn.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

STATE = {"debug": False}


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ and absl chatter off the terminal (before it is imported)."""
    # 3: C++ errors too. With oneDNN on, TensorFlow logs an error-level line
    # ("oneDNN supports DT_BOOL only on platforms with AVX-512") for the mask
    # ops of every run on CPUs without AVX-512; failures still raise Python
    # exceptions, which the CLI reports. TF_CPP_MIN_LOG_LEVEL=0 shows it all.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # oneDNN stays on (TensorFlow's default): bench/train_throughput.py on the
    # 2 x 256 LSTM language model measured 33,024 tokens/s with it and 26,872
    # with TF_ENABLE_ONEDNN_OPTS=0 (two runs, back to back, idle machine).
    logging.getLogger("absl").setLevel(logging.ERROR)


def import_tensorflow_quietly(
    cpu_devices: int = 0,
    initialize: bool = True,
    intra_op_threads: int = 0,
    inter_op_threads: int = 0,
) -> None:
    """Import TensorFlow with its C++ start-up banner (oneDNN, CUDA probes) kept off stderr.

    absl writes those lines before any log level applies, so stderr is pointed
    at /dev/null for the import only; Python errors still surface afterwards.
    `cpu_devices` (or TEXTRNN_CPU_DEVICES) > 1 splits the CPU into that many
    logical devices first: MirroredStrategy replicas on a host without GPUs.
    `initialize=False` leaves the runtime alone: MultiWorkerMirroredStrategy
    must configure collective ops before it starts. `intra_op_threads` /
    `inter_op_threads` (0: TensorFlow's default) size TensorFlow's thread
    pools, which are fixed once the runtime starts.
    """
    if "tensorflow" in sys.modules:
        return
    if not os.path.exists("/proc/driver/nvidia") and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # no NVIDIA driver: skip the failing CUDA probe
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
        import tensorflow_text  # noqa: F401 - registers its ops

        cpu_devices = cpu_devices or int(os.environ.get("TEXTRNN_CPU_DEVICES", "0") or 0)
        if cpu_devices > 1 and not tf.config.list_physical_devices("GPU"):
            cpus = tf.config.list_physical_devices("CPU")
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
        if intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        if inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
        if initialize:
            tf.config.list_logical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    tf.get_logger().setLevel(logging.ERROR)


def echo_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def command(function: F) -> F:
    """Run a CLI command with textrnn's error contract (exit 0 / 1 / 2, one line)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            # `--strategy mirrored` without GPUs: two CPU replicas (set before TF initializes).
            import_tensorflow_quietly(
                2 if kwargs.get("strategy") == "mirrored" else 0,
                initialize=kwargs.get("strategy") != "multiworker"
                and "TF_CONFIG" not in os.environ,
                intra_op_threads=kwargs.get("tensorflow_intra_op_parallelism") or 0,
                inter_op_threads=kwargs.get("tensorflow_inter_op_parallelism") or 0,
            )
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except UserError as error:
            if STATE["debug"]:
                traceback.print_exc()
            echo_error(str(error))
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            echo_error("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader went away (`... | head`): stop quietly, with the status of a tool
            # that SIGPIPE ended (128 + 13). Point stdout at /dev/null so that Python's own
            # flush at exit does not fail on the closed pipe again.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except Exception as error:  # noqa: BLE001 - the contract: one line, exit 1
            if STATE["debug"]:
                traceback.print_exc()
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            echo_error(
                f"internal error: {type(error).__name__}: {first} (rerun with --debug for the traceback)"
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False))


def read_inputs(texts: list[str] | None, encoding: str = "utf-8") -> list[str]:
    """Texts from arguments, else lines on stdin (decoded with `encoding`, errors name the line)."""
    if texts:
        return list(texts)
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError("no input: pass texts as arguments or lines on stdin")
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(line.rstrip(b"\r").decode(encoding))
        except UnicodeDecodeError:
            raise UserError(
                f"stdin, line {number}: not valid {encoding} text; pass --encoding"
            ) from None
        except LookupError:
            raise UserError(f"unknown encoding {encoding!r} (--encoding)") from None
    return out


# Options used by several commands ---------------------------------------------

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML recipe; flags override its values.")
]
TrainOption = Annotated[
    str | None, typer.Option("--train", help="Training data: a file or a data set name.")
]
ValidOption = Annotated[
    str | None, typer.Option("--valid", help="Validation data; default: a seeded split of --train.")
]
EpochsOption = Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs to train.")]
BatchSizeOption = Annotated[
    int | None,
    typer.Option("--batch-size", min=1, help="Global batch size (split across replicas)."),
]
LearningRateOption = Annotated[
    float | None, typer.Option("--learning-rate", help="Peak learning rate.")
]
StrategyOption = Annotated[
    str | None,
    typer.Option("--strategy", help="auto | cpu | mirrored | multiworker | tpu (tf.distribute)."),
]
TPUOption = Annotated[
    str | None, typer.Option("--tpu", help="TPU name or address for --strategy tpu.")
]
SeedOption = Annotated[
    int | None, typer.Option("--seed", help="Random seed; a CPU run is repeatable.")
]
MixedPrecisionOption = Annotated[
    str | None,
    typer.Option("--mixed-precision", help="mixed_float16 (GPU) | mixed_bfloat16 (TPU, CPU)."),
]
StaticShapesOption = Annotated[
    bool | None,
    typer.Option("--static-shapes/--dynamic-shapes", help="Fixed padded shapes (TPU / XLA)."),
]
BackupEveryStepsOption = Annotated[
    int | None,
    typer.Option(
        "--backup-every-steps",
        min=0,
        help="Back up every N steps too (a killed run resumes mid-epoch); 0 = at epoch ends only.",
    ),
]
WorkerHostsOption = Annotated[
    str | None,
    typer.Option(
        "--worker-hosts",
        help="--strategy multiworker without TF_CONFIG: host:port,host:port (same list on every worker).",
    ),
]
TaskIndexOption = Annotated[
    int | None,
    typer.Option(
        "--task-index", min=0, help="This worker's position in --worker-hosts (0 = chief)."
    ),
]
RestartOption = Annotated[
    bool, typer.Option("--restart", help="Start over instead of resuming from --run-dir.")
]
EncodingOption = Annotated[
    str | None, typer.Option("--encoding", help="Text encoding of input files (e.g. latin-1).")
]
JSONOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ModelOption = Annotated[
    Path,
    typer.Option("--model", help="A run directory or a SavedModel export (version or base dir)."),
]
RunDirRequired = Annotated[Path, typer.Option("--run-dir", help="The training run directory.")]


# (parameter, option type, config key) for the flags every `train` command takes.
TRAINING_FLAGS: tuple[tuple[str, Any, str], ...] = (
    ("epochs", EpochsOption, "training.epochs"),
    ("batch_size", BatchSizeOption, "training.batch_size"),
    ("learning_rate", LearningRateOption, "training.learning_rate"),
    ("strategy", StrategyOption, "training.strategy"),
    ("tpu", TPUOption, "training.tpu"),
    ("seed", SeedOption, "training.seed"),
    ("mixed_precision", MixedPrecisionOption, "training.mixed_precision"),
    ("static_shapes", StaticShapesOption, "training.static_shapes"),
    ("backup_every_steps", BackupEveryStepsOption, "training.backup_every_steps"),
    ("worker_hosts", WorkerHostsOption, "training.worker_hosts"),
    ("task_index", TaskIndexOption, "training.task_index"),
)


def training_options(function: F) -> F:
    """Give a `train` command the shared training flags (`TRAINING_FLAGS`).

    The decorated function declares its own options plus a final
    `shared_flags` parameter; Typer sees the shared flags appended to its
    signature, and their values reach the function as one dict of dotted
    config keys, ready to merge into the recipe overrides.
    """
    signature = inspect.signature(function, eval_str=True)
    own = [p for name, p in signature.parameters.items() if name != "shared_flags"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option)
        for name, option, _ in TRAINING_FLAGS
    ]

    @functools.wraps(function)
    def wrapper(**kwargs: Any) -> Any:
        flags = {key: kwargs.pop(name, None) for name, _, key in TRAINING_FLAGS}
        return function(**kwargs, shared_flags=flags)

    wrapper.__signature__ = signature.replace(parameters=[*own, *shared])  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
