"""Every CLI option, declared once.

Commands take their options from here as `Annotated` types; a command sets its
own default in its signature (`run_dir: options.RunDir = Path("runs/lm")`).
`training_options` gives every `train` command the shared training flags.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

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
        help="--strategy multiworker without TF_CONFIG: host:port,host:port "
        "(same list on every worker).",
    ),
]
TaskIndexOption = Annotated[
    int | None,
    typer.Option(
        "--task-index", min=0, help="This worker's position in --worker-hosts (0 = chief)."
    ),
]
TimeBudgetOption = Annotated[
    float | None,
    typer.Option(
        "--time-budget",
        min=0.0,
        help="Minutes of training: the schedule fits the budget, the best weights are kept "
        "(--epochs is then not used).",
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
RunDir = Annotated[
    Path, typer.Option("--run-dir", help="Where the run lives; rerunning resumes from it.")
]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Export base directory; the next version is written (default: saved_models/<task>).",
    ),
]
BatchSizeInference = Annotated[
    int, typer.Option("--batch-size", min=1, help="Inputs per model call (texts, sentences, rows).")
]
JSONLinesOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
DataOption = Annotated[
    str, typer.Option("--data", help="Data to evaluate on: a file or a data set name.")
]


# (parameter, option type, config key) for the flags every `train` command takes.
TRAINING_FLAGS: tuple[tuple[str, Any, str], ...] = (
    ("epochs", EpochsOption, "training.epochs"),
    ("batch_size", BatchSizeOption, "training.batch_size"),
    ("learning_rate", LearningRateOption, "training.learning_rate"),
    ("strategy", StrategyOption, "training.strategy"),
    ("tpu", TPUOption, "training.tpu"),
    ("seed", SeedOption, "training.seed"),
    ("time_budget", TimeBudgetOption, "training.time_budget_minutes"),
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
