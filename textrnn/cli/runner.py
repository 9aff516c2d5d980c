"""How every command runs: TensorFlow started as the command declares, and the error contract.

`command` turns `UserError` into one line on stderr and exit code 2, any other
exception into one line and exit code 1 (a traceback with `--debug`), a closed
pipe into 141 and Ctrl-C into 130. Each command declares how TensorFlow must
start (`startup=`): logical CPU devices for mirrored training, no runtime
initialization before multi-worker collectives, thread-pool sizes for serving.
TensorFlow fixes all of these when its runtime starts, so they are applied
before the command's body imports it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import typer

from textrnn.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

STATE = {"debug": False}


@dataclass(frozen=True)
class Startup:
    """How a command starts TensorFlow.

    cpu_devices: > 1 splits the CPU into that many logical devices (MirroredStrategy
        replicas on a host without GPUs); 0 reads TEXTRNN_CPU_DEVICES.
    initialize: False leaves the runtime alone (multi-worker collectives configure it).
    intra_op_threads / inter_op_threads: TensorFlow's thread pools (0: its default).
    """

    cpu_devices: int = 0
    initialize: bool = True
    intra_op_threads: int = 0
    inter_op_threads: int = 0


def default_startup(arguments: dict[str, Any]) -> Startup:
    """Most commands: TensorFlow as it comes (a TF_CONFIG job still configures collectives)."""
    return Startup(initialize="TF_CONFIG" not in os.environ)


def training_startup(arguments: dict[str, Any]) -> Startup:
    """`train` commands: `--strategy mirrored` without GPUs gets two CPU replicas;
    `--strategy multiworker` (or TF_CONFIG) must not initialize the runtime first."""
    strategy = arguments.get("strategy")
    return Startup(
        cpu_devices=2 if strategy == "mirrored" else 0,
        initialize=strategy != "multiworker" and "TF_CONFIG" not in os.environ,
    )


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


def command(
    function: F | None = None, *, startup: Callable[[dict[str, Any]], Startup] = default_startup
) -> Any:
    """Run a CLI command with textrnn's error contract (exit 0 / 1 / 2, one line).

    Use as `@command` or `@command(startup=training_startup)`; `startup` maps the
    command's arguments to how TensorFlow starts.
    """
    if function is None:
        return functools.partial(command, startup=startup)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            start = startup(kwargs)
            import_tensorflow_quietly(
                start.cpu_devices,
                initialize=start.initialize,
                intra_op_threads=start.intra_op_threads,
                inter_op_threads=start.inter_op_threads,
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
                f"internal error: {type(error).__name__}: {first} "
                "(rerun with --debug for the traceback)"
            )
            raise typer.Exit(1) from None

    return wrapper
