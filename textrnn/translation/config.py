"""The translation recipe: `[data]` pairs, `[tokenizer]`, `[model]`, `[decoding]`, `[training]`."""

from __future__ import annotations

from dataclasses import dataclass, field

from textrnn.config import StackConfig, TokenizerConfig, TrainingConfig, at_least, choice, fraction
from textrnn.decoding.options import (  # noqa: F401 - re-exported for the translator
    MAX_BEAM_SIZE,
    MAX_COVERAGE_PENALTY,
    MAX_NO_REPEAT_NGRAM,
    check_decoding,
)
from textrnn.errors import ConfigError


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
        at_least("data.source_max_length", self.source_max_length, 1)
        at_least("data.target_max_length", self.target_max_length, 3)
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
        at_least("model.embedding_dim", self.embedding_dim, 1)
        fraction("model.embedding_dropout", self.embedding_dropout)
        choice("model.bridge", self.bridge, ("dense", "zeros"))
        choice("model.attention", self.attention, ("additive", "dot", "general"))
        at_least("model.attention_units", self.attention_units, 0)
        at_least("model.attentional_dim", self.attentional_dim, 0)
        fraction("model.dropout", self.dropout)
        fraction("model.label_smoothing", self.label_smoothing)
        if self.decoder.bidirectional:
            raise ConfigError(
                "model.decoder.bidirectional must be false (a decoder reads left to right)"
            )
        if self.decoder.locked_dropout or self.decoder.weight_drop:
            raise ConfigError(
                "model.decoder.locked_dropout and model.decoder.weight_drop are not supported by "
                "the attention decoder (the encoder takes them); remove them"
            )


@dataclass(frozen=True)
class DecodingConfig:
    beam_size: int = 5  # 1 = greedy; at most MAX_BEAM_SIZE
    length_penalty: float = 0.6  # GNMT alpha: score = log P / ((5 + length) / 6) ** alpha
    max_length_ratio: float = 1.5  # output tokens <= ratio * source tokens + max_length_offset
    max_length_offset: int = 10
    no_repeat_ngram: int = 0  # N > 0: never repeat an N-gram of subword tokens in an output
    coverage_penalty: float = 0.0  # GNMT beta: + beta * sum_i log(min(attention to i, 1))

    def __post_init__(self) -> None:
        check_decoding(
            self.beam_size,
            self.length_penalty,
            self.max_length_ratio,
            lambda key: f"decoding.{key}",
            self.no_repeat_ngram,
            self.coverage_penalty,
        )
        at_least("decoding.max_length_offset", self.max_length_offset, 0)


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
