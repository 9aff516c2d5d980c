"""Configuration shared by every task: frozen dataclasses, TOML recipes, CLI overrides.

This module holds the sections every task shares (`[tokenizer]`, the recurrent
stack, `[training]`) and the loader; each task's own config class lives in
`textrnn/<task>/config.py`.

Resolution order (rightmost wins): dataclass defaults -> TOML recipe -> CLI
flags. Recipes are TOML with one table per section (`[data]`, `[tokenizer]`,
`[model]`, `[training]`); an unknown section or key raises `ConfigError`
naming it and listing the known ones.

Example:

```python
config = load_config(SentimentConfig, "tasks/sentiment/config.toml",  # textrnn.sentiment.config
                     {"training.epochs": 3})
```
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from textrnn.errors import ConfigError
from textrnn.wordpiece import LEARNERS

T = TypeVar("T")


@dataclass(frozen=True)
class TokenizerConfig:
    """How text becomes token ids (see `textrnn.tokenizers`)."""

    kind: str = "word"  # word | subword | char
    lowercase: bool = True
    normalization: str = "NFKC"  # NFKC | NFC | NFKD | NFD | "" (none)
    split: str = "script"  # word boundaries: script (Unicode script + punctuation) | whitespace
    vocabulary_size: int = 20000  # including the reserved tokens
    min_frequency: int = 1
    unknown_aliases: tuple[str, ...] = ()  # corpus tokens that already mean "unknown", e.g. "<unk>"
    # subword only: which WordPiece learner picks the pieces (textrnn.wordpiece): huggingface
    # (seconds) | tensorflow_text (the BERT learner, minutes on large corpora; what recipes
    # measured before 2026-12-02 used)
    learner: str = "huggingface"

    def __post_init__(self) -> None:
        choice("tokenizer.kind", self.kind, ("word", "subword", "char"))
        choice("tokenizer.split", self.split, ("script", "whitespace"))
        choice("tokenizer.normalization", self.normalization, ("NFKC", "NFC", "NFKD", "NFD", ""))
        choice("tokenizer.learner", self.learner, LEARNERS)
        at_least("tokenizer.vocabulary_size", self.vocabulary_size, 8)
        at_least("tokenizer.min_frequency", self.min_frequency, 1)


@dataclass(frozen=True)
class StackConfig:
    """The shared recurrent stack (see `textrnn.rnn_stack.RNNStack`)."""

    cell: str = "lstm"  # lstm | gru | rnn
    num_layers: int = 1
    units: int = 128
    bidirectional: bool = False
    dropout: float = 0.0  # between layers
    residual: bool = False  # residual connections from the second layer on
    # One dropout mask per sequence, the same at every step (variational dropout), for the
    # dropout between layers and, in a language model, on its inputs and outputs too.
    locked_dropout: bool = False
    weight_drop: float = 0.0  # DropConnect on the recurrent kernels, one mask per batch

    def layer_arguments(self) -> dict[str, Any]:
        """The `RNNStack` arguments these settings give (a task adds its own: name, states)."""
        return {
            "cell": self.cell,
            "num_layers": self.num_layers,
            "units": self.units,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout,
            "residual": self.residual,
            "locked_dropout": self.locked_dropout,
            "weight_drop": self.weight_drop,
        }

    def __post_init__(self) -> None:
        choice("model.stack.cell", self.cell, ("lstm", "gru", "rnn"))
        at_least("model.stack.num_layers", self.num_layers, 1)
        at_least("model.stack.units", self.units, 1)
        fraction("model.stack.dropout", self.dropout)
        fraction("model.stack.weight_drop", self.weight_drop)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimization and distribution, shared by every task (`textrnn.training`)."""

    epochs: int = 5
    batch_size: int = 64  # global batch size, split across replicas
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    weight_decay: float = 0.0  # adamw only
    clipnorm: float = 0.0  # 0 disables gradient clipping
    # Exponential moving average of the weights (e.g. 0.999) for validation and export; 0 disables.
    ema: float = 0.0
    lr_schedule: str = "constant"  # constant | cosine | linear | slanted (ULMFiT's triangle)
    warmup_steps: int = 0
    # Train for this many minutes (0: off): the schedule spans the budget instead of the
    # epochs, training stops when it is spent (epochs is then not used; early stopping still
    # applies) and the best weights are kept.
    time_budget_minutes: float = 0.0
    # ULMFiT fine-tuning (textrnn.training.layer_groups): each layer group below the top
    # learns this many times slower than the one above (1: one rate; 2.6 in the paper), and
    # gradual unfreezing trains the top group in the first epoch, one more each epoch.
    discriminative_lr: float = 1.0
    gradual_unfreeze: bool = False
    # With gradual_unfreeze and the slanted schedule: 0 = one triangle over the whole run;
    # D > 0 = each unfreezing stage its own triangle, stage k peaking at learning_rate * D**k
    # (fastai's ULMFiT classifier recipe: one cycle per stage, 2e-2, 1e-2, 5e-3, ...).
    stage_lr_decay: float = 0.0
    early_stopping_patience: int = 0  # epochs without improvement; 0 disables
    seed: int = 1234
    strategy: str = "auto"  # auto | cpu | mirrored | multiworker | tpu
    tpu: str = ""  # TPU name or address for --strategy tpu
    mixed_precision: str = ""  # "" | mixed_float16 | mixed_bfloat16
    jit_compile: str = "auto"  # auto | true | false
    static_shapes: bool = False  # pad every batch to max_length, drop the remainder (TPU)
    backup_every_steps: int = (
        0  # also back up every N training steps (resume mid-epoch); 0 = at epoch ends only
    )
    worker_hosts: str = (
        ""  # multiworker without TF_CONFIG: host:port,host:port (every worker, same order)
    )
    task_index: int = 0  # multiworker: this worker's index in worker_hosts (0 = chief)
    shuffle_buffer: int = 100000

    def __post_init__(self) -> None:
        at_least("training.epochs", self.epochs, 1)
        at_least("training.batch_size", self.batch_size, 1)
        if not self.learning_rate > 0:
            raise ConfigError(f"training.learning_rate must be > 0, got {self.learning_rate}")
        choice("training.optimizer", self.optimizer, ("adam", "adamw", "sgd", "rmsprop"))
        choice(
            "training.lr_schedule", self.lr_schedule, ("constant", "cosine", "linear", "slanted")
        )
        choice(
            "training.strategy", self.strategy, ("auto", "cpu", "mirrored", "multiworker", "tpu")
        )
        choice(
            "training.mixed_precision",
            self.mixed_precision,
            ("", "mixed_float16", "mixed_bfloat16", "float32"),
        )
        choice("training.jit_compile", self.jit_compile, ("auto", "true", "false"))
        if self.discriminative_lr < 1.0:
            raise ConfigError(
                f"training.discriminative_lr must be >= 1, got {self.discriminative_lr}"
            )
        if not 0.0 <= self.stage_lr_decay <= 1.0:
            raise ConfigError(
                f"training.stage_lr_decay must be in [0, 1] (0: off), got {self.stage_lr_decay}"
            )
        if self.stage_lr_decay and not (
            self.gradual_unfreeze and self.lr_schedule == "slanted" and not self.time_budget_minutes
        ):
            raise ConfigError(
                "training.stage_lr_decay needs training.gradual_unfreeze = true and "
                'training.lr_schedule = "slanted", without a time budget'
            )
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"training.ema must be in [0, 1), got {self.ema}")
        for name in ("clipnorm", "weight_decay", "time_budget_minutes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"training.{name} must be >= 0")
        for name in ("warmup_steps", "early_stopping_patience", "backup_every_steps", "task_index"):
            at_least(f"training.{name}", getattr(self, name), 0)


# ----------------------------------------------------------------------------- loading


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> T:
    """Defaults, then the TOML recipe at `path`, then dotted `overrides` (None values skipped)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (--config)")
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
    changes = {dotted: value for dotted, value in (overrides or {}).items() if value is not None}
    return from_dict(cls, _merge(values, changes))


def given_keys(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> set[str]:
    """The dotted keys a recipe at `path` and `overrides` set (None values are not set)."""
    keys = {dotted for dotted, value in (overrides or {}).items() if value is not None}
    if path is not None and Path(path).is_file():
        try:
            values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return keys  # load_config reports it
        keys |= _dotted_keys(values)
    return keys


def _dotted_keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in values.items():
        if isinstance(value, dict) and key != "label_names":
            keys |= _dotted_keys(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def from_dict(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from nested dicts, rejecting unknown keys."""
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        section = f" in [{where}]" if where else ""
        raise ConfigError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
            f"{section}; known keys: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in values.items():
        default = _field_default(known[name])
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            # A partial table overrides the field's own default, not the class defaults
            # (e.g. translation's bidirectional GRU encoder keeps `bidirectional = true`).
            value = _deep_merge(dataclasses.asdict(default), value)
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except TypeError as error:  # pragma: no cover - dataclass signature mismatch
        raise ConfigError(str(error)) from None


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _deep_merge(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        return from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where} must be an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts (tuples become lists), JSON-ready."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def replace(config: T, **changes: Any) -> T:
    """`dataclasses.replace` that accepts dotted keys: replace(c, **{"training.epochs": 2})."""
    return from_dict(type(config), _merge(to_dict(config), changes))


def _merge(values: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys ("training.epochs") in nested dicts; unknown ones fail in `from_dict`."""
    for dotted, value in changes.items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


def choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        shown = " | ".join(repr(c) if c == "" else str(c) for c in choices)
        raise ConfigError(f"{name} must be one of {shown}, got {value!r}")


def at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value}")
