"""Task configurations: frozen dataclasses, TOML recipes, CLI overrides.

Resolution order (rightmost wins): dataclass defaults -> TOML recipe -> CLI
flags. Recipes are TOML with one table per section (`[data]`, `[tokenizer]`,
`[model]`, `[training]`); an unknown section or key raises `ConfigError`
naming it and listing the known ones.

Example:

```python
config = load_config(SentimentConfig, "tasks/sentiment/config.toml",
                     {"training.epochs": 3})
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from textrnn.errors import ConfigError

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

    def __post_init__(self) -> None:
        _choice("tokenizer.kind", self.kind, ("word", "subword", "char"))
        _choice("tokenizer.split", self.split, ("script", "whitespace"))
        _choice("tokenizer.normalization", self.normalization, ("NFKC", "NFC", "NFKD", "NFD", ""))
        _at_least("tokenizer.vocabulary_size", self.vocabulary_size, 8)
        _at_least("tokenizer.min_frequency", self.min_frequency, 1)


@dataclass(frozen=True)
class StackConfig:
    """The shared recurrent stack (see `textrnn.rnn_stack.RNNStack`)."""

    cell: str = "lstm"  # lstm | gru | rnn
    num_layers: int = 1
    units: int = 128
    bidirectional: bool = False
    dropout: float = 0.0  # between layers
    residual: bool = False  # residual connections from the second layer on

    def __post_init__(self) -> None:
        _choice("model.stack.cell", self.cell, ("lstm", "gru", "rnn"))
        _at_least("model.stack.num_layers", self.num_layers, 1)
        _at_least("model.stack.units", self.units, 1)
        _fraction("model.stack.dropout", self.dropout)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimization and distribution, shared by every task (`textrnn.training`)."""

    epochs: int = 5
    batch_size: int = 64  # global batch size, split across replicas
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    weight_decay: float = 0.0  # adamw only
    clipnorm: float = 0.0  # 0 disables gradient clipping
    ema: float = 0.0  # exponential moving average of weights (e.g. 0.999) for validation and export; 0 disables
    lr_schedule: str = "constant"  # constant | cosine | linear
    warmup_steps: int = 0
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
        _at_least("training.epochs", self.epochs, 1)
        _at_least("training.batch_size", self.batch_size, 1)
        if not self.learning_rate > 0:
            raise ConfigError(f"training.learning_rate must be > 0, got {self.learning_rate}")
        _choice("training.optimizer", self.optimizer, ("adam", "adamw", "sgd", "rmsprop"))
        _choice("training.lr_schedule", self.lr_schedule, ("constant", "cosine", "linear"))
        _choice(
            "training.strategy", self.strategy, ("auto", "cpu", "mirrored", "multiworker", "tpu")
        )
        _choice(
            "training.mixed_precision",
            self.mixed_precision,
            ("", "mixed_float16", "mixed_bfloat16", "float32"),
        )
        _choice("training.jit_compile", self.jit_compile, ("auto", "true", "false"))
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"training.ema must be in [0, 1), got {self.ema}")
        for name in ("clipnorm", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"training.{name} must be >= 0")
        for name in ("warmup_steps", "early_stopping_patience", "backup_every_steps", "task_index"):
            _at_least(f"training.{name}", getattr(self, name), 0)


# ----------------------------------------------------------------------------- sentiment


@dataclass(frozen=True)
class SentimentDataConfig:
    train: str = ""
    valid: str = ""  # empty: hold out `validation_split` of the training data
    text_column: str = "text"
    label_column: str = "label"
    valid_text_column: str = ""  # empty: same as text_column
    valid_label_column: str = ""  # empty: same as label_column
    encoding: str = "utf-8"
    validation_split: float = 0.1
    max_length: int = 64  # tokens; longer texts are truncated
    label_names: dict[str, str] = field(default_factory=dict)  # raw label -> display name

    def __post_init__(self) -> None:
        _at_least("data.max_length", self.max_length, 1)
        if not 0.0 < self.validation_split < 1.0:
            raise ConfigError("data.validation_split must be in (0, 1)")


@dataclass(frozen=True)
class SentimentModelConfig:
    embedding_dim: int = 128
    token_dropout: float = 0.0  # replace tokens by [UNK] at this rate while training
    embedding_dropout: float = 0.0
    stack: StackConfig = field(default_factory=StackConfig)
    pooling: str = "final"  # final | max | mean
    dropout: float = 0.3  # before the output layer
    class_weight: str = "none"  # none | balanced
    init_from: str = (
        ""  # a language-model run directory: start from its embedding and stack (and vocabulary)
    )

    def __post_init__(self) -> None:
        _at_least("model.embedding_dim", self.embedding_dim, 1)
        _choice("model.pooling", self.pooling, ("final", "max", "mean"))
        _fraction("model.dropout", self.dropout)
        _fraction("model.embedding_dropout", self.embedding_dropout)
        _fraction("model.token_dropout", self.token_dropout)
        _choice("model.class_weight", self.class_weight, ("none", "balanced"))


@dataclass(frozen=True)
class SentimentConfig:
    """Text classification (many-to-one)."""

    task: str = "sentiment"
    data: SentimentDataConfig = field(default_factory=SentimentDataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: SentimentModelConfig = field(default_factory=SentimentModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


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


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        shown = " | ".join(repr(c) if c == "" else str(c) for c in choices)
        raise ConfigError(f"{name} must be one of {shown}, got {value!r}")


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value}")


# ----------------------------------------------------------------------------- language model


@dataclass(frozen=True)
class LanguageModelDataConfig:
    train: str = ""
    valid: str = ""  # empty: hold out the last `validation_split` of the training text
    encoding: str = "utf-8"
    layout: str = (
        "continuous"  # continuous (one stream, e.g. a book) | lines (one sentence a line + [EOS])
    )
    validation_split: float = 0.05
    seq_len: int = 100  # tokens per training window (truncated-BPTT length)
    carry_state: bool = False  # continuous only: each batch row continues the previous batch's row

    def __post_init__(self) -> None:
        _choice("data.layout", self.layout, ("continuous", "lines"))
        _at_least("data.seq_len", self.seq_len, 1)
        if not 0.0 < self.validation_split < 1.0:
            raise ConfigError("data.validation_split must be in (0, 1)")
        if self.carry_state and self.layout != "continuous":
            raise ConfigError('data.carry_state needs data.layout = "continuous"')


@dataclass(frozen=True)
class LanguageModelModelConfig:
    embedding_dim: int = 128
    embedding_dropout: float = 0.0  # on the embedded inputs
    stack: StackConfig = field(default_factory=StackConfig)
    output_dropout: float = 0.0  # on the last layer's outputs, before the softmax
    tie_embeddings: bool = False  # output projection = embedding matrix (transposed)

    def __post_init__(self) -> None:
        _at_least("model.embedding_dim", self.embedding_dim, 1)
        _fraction("model.embedding_dropout", self.embedding_dropout)
        _fraction("model.output_dropout", self.output_dropout)
        if self.stack.bidirectional:
            raise ConfigError("model.stack.bidirectional must be false for a language model")


@dataclass(frozen=True)
class LanguageModelConfig:
    """Language modeling and generation (many-to-many, then one-to-many)."""

    task: str = "language_model"
    data: LanguageModelDataConfig = field(default_factory=LanguageModelDataConfig)
    tokenizer: TokenizerConfig = field(
        default_factory=lambda: TokenizerConfig(kind="char", lowercase=False, normalization="")
    )
    model: LanguageModelModelConfig = field(default_factory=LanguageModelModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


# ----------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class TranslationDataConfig:
    source: str = ""  # source-language text file, one sentence a line
    target: str = ""  # target-language text file, aligned line by line with `source`
    train: str = ""  # or one table (.tsv/.csv/.jsonl/.parquet, or a data set name) of pairs
    source_column: str = "source"  # columns of `train` / `valid` tables
    target_column: str = "target"
    valid_source: str = ""  # validation files; empty: hold out `validation_split` of training
    valid_target: str = ""
    valid: str = ""  # or one validation table
    encoding: str = "utf-8"
    validation_split: float = 0.05
    source_max_length: int = 64  # source tokens kept (longer sentences are truncated)
    target_max_length: int = 64  # target tokens kept, [BOS] / [EOS] included

    def __post_init__(self) -> None:
        _at_least("data.source_max_length", self.source_max_length, 1)
        _at_least("data.target_max_length", self.target_max_length, 3)
        if not 0.0 < self.validation_split < 1.0:
            raise ConfigError("data.validation_split must be in (0, 1)")


@dataclass(frozen=True)
class TranslationTokenizerConfig(TokenizerConfig):
    """Tokenizer settings for both languages; `joint` learns one shared vocabulary."""

    kind: str = "subword"
    lowercase: bool = False
    vocabulary_size: int = 8000  # per language (or for the joint vocabulary)
    joint: bool = False


@dataclass(frozen=True)
class TranslationModelConfig:
    embedding_dim: int = 256  # source and target embeddings
    embedding_dropout: float = 0.1
    encoder: StackConfig = field(
        default_factory=lambda: StackConfig(cell="gru", units=256, bidirectional=True)
    )
    decoder: StackConfig = field(default_factory=lambda: StackConfig(cell="gru", units=256))
    bridge: str = "dense"  # dense | zeros: decoder initial states from the encoder's final ones
    attention: str = "general"  # additive (Bahdanau) | dot | general (Luong)
    attention_units: int = 0  # additive only: hidden size; 0 = decoder units
    attentional_dim: int = 0  # size of tanh(W [context; state]); 0 = decoder units
    input_feeding: bool = True  # feed the previous attentional vector with the next input
    dropout: float = 0.2  # on the attentional vector
    label_smoothing: float = 0.1
    tie_embeddings: bool = False  # decoder output layer reuses the target embeddings

    def __post_init__(self) -> None:
        _at_least("model.embedding_dim", self.embedding_dim, 1)
        _fraction("model.embedding_dropout", self.embedding_dropout)
        _choice("model.bridge", self.bridge, ("dense", "zeros"))
        _choice("model.attention", self.attention, ("additive", "dot", "general"))
        _at_least("model.attention_units", self.attention_units, 0)
        _at_least("model.attentional_dim", self.attentional_dim, 0)
        _fraction("model.dropout", self.dropout)
        _fraction("model.label_smoothing", self.label_smoothing)
        if self.decoder.bidirectional:
            raise ConfigError(
                "model.decoder.bidirectional must be false (a decoder reads left to right)"
            )


# Largest translation beam: a request's beam_size is checked against it in the exported graph,
# since a huge beam would hold a server's memory and cores for minutes.
MAX_BEAM_SIZE = 64


@dataclass(frozen=True)
class DecodingConfig:
    beam_size: int = 5  # 1 = greedy; at most MAX_BEAM_SIZE
    length_penalty: float = 0.6  # GNMT alpha: score = log P / ((5 + length) / 6) ** alpha
    max_length_ratio: float = 1.5  # output tokens <= ratio * source tokens + max_length_offset
    max_length_offset: int = 10

    def __post_init__(self) -> None:
        check_decoding(
            self.beam_size,
            self.length_penalty,
            self.max_length_ratio,
            lambda key: f"decoding.{key}",
        )
        _at_least("decoding.max_length_offset", self.max_length_offset, 0)


def check_decoding(
    beam_size: int, length_penalty: float, max_length_ratio: float, name: Any
) -> None:
    """Raise `ConfigError` if a decoding setting is out of range; `name(key)` names it
    (a recipe key such as "decoding.beam_size", or a flag such as "--beam-size")."""
    if not 1 <= beam_size <= MAX_BEAM_SIZE:
        raise ConfigError(
            f"{name('beam_size')} must be in [1, {MAX_BEAM_SIZE}] (1 is greedy), got {beam_size}"
        )
    if not (math.isfinite(length_penalty) and length_penalty >= 0):
        raise ConfigError(
            f"{name('length_penalty')} must be a finite number >= 0, got {length_penalty}"
        )
    if not (math.isfinite(max_length_ratio) and max_length_ratio > 0):
        raise ConfigError(
            f"{name('max_length_ratio')} must be a finite number > 0, got {max_length_ratio}"
        )


@dataclass(frozen=True)
class TranslationConfig:
    """Sequence to sequence translation with attention (encoder-decoder)."""

    task: str = "translation"
    data: TranslationDataConfig = field(default_factory=TranslationDataConfig)
    tokenizer: TranslationTokenizerConfig = field(default_factory=TranslationTokenizerConfig)
    model: TranslationModelConfig = field(default_factory=TranslationModelConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(jit_compile="false", clipnorm=1.0)
    )
