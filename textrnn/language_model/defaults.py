"""Defaults chosen per tokenizer kind and corpus size, for the keys no recipe or flag sets.

The dataclass defaults (one 128-unit layer, windows of 100, batch 64, a
constant learning rate, untied embeddings) suit a character model on a small
text; a word model trained with them learns little (issue 19: perplexity 577
on 130,000 newswire words, 20 steps an epoch). `choose_defaults` replaces the
keys the user left alone by what the shipped recipes found to work for the
tokenizer kind, sized to the corpus, and says what it chose:

- word / subword: 2 x 256 LSTM (1 x 128 under 30,000 words) with tied
  embeddings of the same width, windows of 64 tokens, the AWD-style dropouts of
  `tasks/lm/shakespeare_word.toml` (embedding 0.2, between layers 0.3, output
  0.3), Adam at 0.003 with 100 warm-up steps and a cosine decay, clipping at 1;
- word: words seen once left out of the vocabulary (`tokenizer.min_frequency = 2`).
  They become `[UNK]` in the training text, so the model learns to predict
  `[UNK]`. On Tiny Shakespeare every training word fitted in the default 20,000,
  so the 3.4% of validation words unseen in training were a target the model had
  never met; after 3 epochs its validation loss was 4.55 where the word recipe
  (10,000 words, the rarest ones `[UNK]`) was at 4.28 (docs/results.md);
- char: 2 x 256 LSTM from 200,000 characters on (1 x 128 below), windows of
  100, cosine decay at 0.003 with clipping at 1;
- both: the largest batch of 64, 32, 16 that still gives 100 steps an epoch
  (counted in windows of `data.seq_len` tokens);
- word / subword on a text of short lines (at most `data.seq_len` tokens a
  non-empty line on average: one sentence or verse a line, as newswire corpora and
  Tiny Shakespeare are): `data.layout = "lines"`, each line `[BOS] ... [EOS]`,
  as the word recipe reads Shakespeare. On Tiny Shakespeare the same model read as
  one stream (`continuous`, windows of 64 shuffled, 115 steps an epoch) was still
  at a validation loss of 6.67 (perplexity 787) after 5 epochs, where read by
  lines it reached 4.74 after one (docs/results.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textrnn import config as config_lib
from textrnn.language_model.config import LanguageModelConfig

MIN_STEPS_PER_EPOCH = 100
BATCH_SIZES = (64, 32, 16)
SMALL_WORD_CORPUS = 30_000  # words
SMALL_CHAR_CORPUS = 200_000  # characters
LINE_TOKENS = 64  # a text whose lines average at most this many tokens is read line by line


@dataclass(frozen=True)
class CorpusShape:
    """About how many tokens the training text holds, and in how many non-empty lines."""

    tokens: int
    lines: int

    @property
    def short_lines(self) -> bool:
        return self.lines > 0 and self.tokens / self.lines <= LINE_TOKENS


def corpus_shape(config: LanguageModelConfig) -> CorpusShape | None:
    """Tokens (words and punctuation, or characters) and non-empty lines of the training
    file, roughly; None if it cannot be read here (the data loader reports that)."""
    path = Path(config.data.train)
    try:
        text = path.read_text(encoding=config.data.encoding, errors="replace")
    except (OSError, LookupError):
        return None
    lines = sum(1 for line in text.splitlines() if line.strip())
    if config.tokenizer.kind == "char":
        return CorpusShape(len(text), lines)
    # Words and punctuation marks, about what the word tokenizer's script split makes.
    return CorpusShape(sum(1 for _ in re.finditer(r"\w+|[^\w\s]", text)), lines)


def corpus_tokens(config: LanguageModelConfig) -> int | None:
    """Tokens in the training file, roughly; None if it cannot be read here."""
    shape = corpus_shape(config)
    return None if shape is None else shape.tokens


def suggested(kind: str, tokens: int | None) -> dict[str, Any]:
    """The dotted keys and values for a `kind` model on a corpus of `tokens` tokens."""
    if kind == "char":
        small = tokens is not None and tokens < SMALL_CHAR_CORPUS
        values: dict[str, Any] = {"data.seq_len": 100}
    else:
        small = tokens is not None and tokens < SMALL_WORD_CORPUS
        values = {
            "data.seq_len": 64,
            "model.tie_embeddings": True,
            "model.embedding_dropout": 0.2,
            "model.output_dropout": 0.3,
            "model.stack.dropout": 0.3,
            "training.warmup_steps": 100,
        }
        if kind == "word":
            # Words seen once become [UNK] in training, so the model learns to predict it:
            # with every training word in the vocabulary, [UNK] is never a training target
            # and each unseen word of new text costs ~10 nats (see the module).
            values["tokenizer.min_frequency"] = 2
    width = 128 if small else 256
    values.update(
        {
            "model.embedding_dim": width,
            "model.stack.units": width,
            "model.stack.num_layers": 1 if small else 2,
            "training.learning_rate": 0.003,
            "training.lr_schedule": "cosine",
            "training.clipnorm": 1.0,
        }
    )
    if kind == "char" and small:
        values["model.embedding_dim"] = 64
    window = values["data.seq_len"]
    values["training.batch_size"] = next(
        (
            size
            for size in BATCH_SIZES
            if tokens is None or tokens >= size * window * MIN_STEPS_PER_EPOCH
        ),
        BATCH_SIZES[-1],
    )
    return values


def choose_defaults(
    config: LanguageModelConfig, given: set[str]
) -> tuple[LanguageModelConfig, list[str]]:
    """`config` with the suggested values for every key not in `given`; the lines to print."""
    shape = corpus_shape(config)
    tokens = None if shape is None else shape.tokens
    values = suggested(config.tokenizer.kind, tokens)
    if "model.embedding_dim" in given or "model.stack.units" in given:
        values.pop("model.tie_embeddings", None)  # tying needs equal widths (or a projection)
    if given & {"tokenizer.vocabulary_size", "tokenizer.min_frequency"}:
        values.pop("tokenizer.min_frequency", None)  # the user chose the vocabulary
    if (
        config.tokenizer.kind != "char"
        and shape is not None
        and shape.short_lines
        and not given & {"data.carry_state", "data.text_column"}  # settings of one layout
    ):
        values["data.layout"] = "lines"
    chosen = {key: value for key, value in values.items() if key not in given}
    if not chosen:
        return config, []
    size = "an unread corpus" if tokens is None else f"about {tokens:,} tokens"
    if shape is not None and shape.lines:
        size += f" in {shape.lines:,} lines"
    settings = ", ".join(f"{key} = {value}" for key, value in chosen.items())
    lines = [
        f"defaults for a {config.tokenizer.kind} model on {size} (no recipe or flag sets "
        f"them): {settings}"
    ]
    return config_lib.replace(config, **chosen), lines
