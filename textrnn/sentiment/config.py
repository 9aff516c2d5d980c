"""The sentiment (text classification) recipe: `[data]`, `[tokenizer]`, `[model]`, `[training]`."""

from __future__ import annotations

from dataclasses import dataclass, field

from textrnn.config import StackConfig, TokenizerConfig, TrainingConfig, at_least, choice, fraction
from textrnn.errors import ConfigError

TRUNCATIONS = ("head", "tail", "head+tail")  # textrnn.tokenizers.keep_ends


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
    max_length: int = 64  # tokens; longer texts are truncated (with model.chunk_length: read)
    # Which tokens of a longer text are kept: its start ("head"), its end ("tail"), or the
    # first quarter and the last three quarters of max_length ("head+tail", Sun et al. 2019).
    truncate: str = "head"
    label_names: dict[str, str] = field(default_factory=dict)  # raw label -> display name

    def __post_init__(self) -> None:
        at_least("data.max_length", self.max_length, 1)
        choice("data.truncate", self.truncate, TRUNCATIONS)
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
    # Read texts in chunks of this many tokens, carrying the states from chunk to chunk and
    # pooling over all of them (ULMFiT's BPT3C, textrnn.sentiment.chunked); 0: in one piece.
    # data.max_length is then the longest text read. Unidirectional stacks only.
    chunk_length: int = 0

    def __post_init__(self) -> None:
        at_least("model.embedding_dim", self.embedding_dim, 1)
        choice("model.pooling", self.pooling, ("final", "max", "mean"))
        fraction("model.dropout", self.dropout)
        fraction("model.embedding_dropout", self.embedding_dropout)
        fraction("model.embedding_word_dropout", self.embedding_word_dropout)
        fraction("model.token_dropout", self.token_dropout)
        choice("model.class_weight", self.class_weight, ("none", "balanced"))
        at_least("model.chunk_length", self.chunk_length, 0)
        if self.chunk_length and self.stack.bidirectional:
            raise ConfigError(
                "model.chunk_length (reading chunk by chunk) needs a unidirectional stack: "
                "set model.stack.bidirectional = false"
            )


@dataclass(frozen=True)
class SentimentTrainingConfig(TrainingConfig):
    # With model.chunk_length: gradients flow through each text's last bptt_chunks chunks
    # only (truncated BPTT across chunks; 0: through every chunk).
    bptt_chunks: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least("training.bptt_chunks", self.bptt_chunks, 0)


@dataclass(frozen=True)
class SentimentConfig:
    """Text classification (many-to-one)."""

    task: str = "sentiment"
    data: SentimentDataConfig = field(default_factory=SentimentDataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: SentimentModelConfig = field(default_factory=SentimentModelConfig)
    training: SentimentTrainingConfig = field(default_factory=SentimentTrainingConfig)

    def __post_init__(self) -> None:
        if self.training.bptt_chunks and not self.model.chunk_length:
            raise ConfigError("training.bptt_chunks needs model.chunk_length (reading in chunks)")
