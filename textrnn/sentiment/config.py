"""The sentiment (text classification) recipe: `[data]`, `[tokenizer]`, `[model]`, `[training]`."""

from __future__ import annotations

from dataclasses import dataclass, field

from textrnn.config import StackConfig, TokenizerConfig, TrainingConfig, at_least, choice, fraction
from textrnn.errors import ConfigError


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
        at_least("data.max_length", self.max_length, 1)
        if not 0.0 < self.validation_split < 1.0:
            raise ConfigError("data.validation_split must be in (0, 1)")


@dataclass(frozen=True)
class SentimentModelConfig:
    embedding_dim: int = 128
    token_dropout: float = 0.0  # replace tokens by [UNK] at this rate while training
    embedding_dropout: float = 0.0  # whole embedding channels, one mask per text (locked)
    embedding_word_dropout: float = 0.0  # drops whole words (embedding rows), one draw per batch
    stack: StackConfig = field(default_factory=StackConfig)
    pooling: str = "final"  # final | max | mean
    dropout: float = 0.3  # before the output layer
    class_weight: str = "none"  # none | balanced
    init_from: str = (
        ""  # a language-model run directory: start from its embedding and stack (and vocabulary)
    )

    def __post_init__(self) -> None:
        at_least("model.embedding_dim", self.embedding_dim, 1)
        choice("model.pooling", self.pooling, ("final", "max", "mean"))
        fraction("model.dropout", self.dropout)
        fraction("model.embedding_dropout", self.embedding_dropout)
        fraction("model.embedding_word_dropout", self.embedding_word_dropout)
        fraction("model.token_dropout", self.token_dropout)
        choice("model.class_weight", self.class_weight, ("none", "balanced"))


@dataclass(frozen=True)
class SentimentConfig:
    """Text classification (many-to-one)."""

    task: str = "sentiment"
    data: SentimentDataConfig = field(default_factory=SentimentDataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: SentimentModelConfig = field(default_factory=SentimentModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
