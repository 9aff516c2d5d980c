"""The language-model recipe: `[data]` (layout, windows), `[tokenizer]`, `[model]`, `[training]`."""

from __future__ import annotations

from dataclasses import dataclass, field

from textrnn.config import StackConfig, TokenizerConfig, TrainingConfig, at_least, choice, fraction
from textrnn.errors import ConfigError


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
    # Read this column of table files (.tsv, .csv, .jsonl, ...), one row a line ("": plain text).
    text_column: str = ""

    def __post_init__(self) -> None:
        choice("data.layout", self.layout, ("continuous", "lines"))
        at_least("data.seq_len", self.seq_len, 1)
        if not 0.0 < self.validation_split < 1.0:
            raise ConfigError("data.validation_split must be in (0, 1)")
        if self.carry_state and self.layout != "continuous":
            raise ConfigError('data.carry_state needs data.layout = "continuous"')
        if self.text_column and self.layout != "lines":
            raise ConfigError('data.text_column needs data.layout = "lines"')


@dataclass(frozen=True)
class LanguageModelModelConfig:
    embedding_dim: int = 128
    embedding_dropout: float = 0.0  # on the embedded inputs (locked with stack.locked_dropout)
    embedding_word_dropout: float = 0.0  # drops whole words (embedding rows), one draw per batch
    stack: StackConfig = field(default_factory=StackConfig)
    output_dropout: float = 0.0  # on the last layer's outputs, before the softmax
    tie_embeddings: bool = False  # output projection = embedding matrix (transposed)
    ar_alpha: float = 0.0  # activation regularization: alpha * mean(dropped outputs ** 2)
    tar_beta: float = 0.0  # temporal AR: beta * mean((h_t - h_{t-1}) ** 2)
    init_from: str = ""  # a language-model run: start from its weights and vocabulary (fine-tune)

    def __post_init__(self) -> None:
        at_least("model.embedding_dim", self.embedding_dim, 1)
        fraction("model.embedding_dropout", self.embedding_dropout)
        fraction("model.embedding_word_dropout", self.embedding_word_dropout)
        fraction("model.output_dropout", self.output_dropout)
        for name in ("ar_alpha", "tar_beta"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)}")
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
