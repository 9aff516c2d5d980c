"""textrnn.language_model.generation: the in-graph sampling loop is seeded, greedy at
temperature 0, and stops at [EOS] for line models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from textrnn import language_model as lm_lib
from textrnn.tasks import ServingParts
from textrnn.tokenizers import EOS_ID

from .tiny_lm import TEXT, generate, train_lm


def test_same_seed_same_text_and_greedy_is_deterministic(char_parts: ServingParts) -> None:
    signature = char_parts.signatures["generate"]
    first = generate(signature, ["to be", ""], seed=1)
    assert first == generate(signature, ["to be", ""], seed=1)
    assert first != generate(signature, ["to be", ""], seed=2)
    greedy = generate(signature, ["to be"], temperature=0.0, seed=1)
    assert greedy == generate(signature, ["to be"], temperature=0.0, seed=99)
    assert greedy == generate(signature, ["to be"], top_k=1, seed=3)
    assert greedy == generate(signature, ["to be"], top_p=1e-7, seed=4)
    assert all(len(t) == 20 for t in first)  # continuous: no [EOS], max_tokens characters
    assert generate(signature, ["x"], max_tokens=0) == [""]


def test_lines_model_stops_at_eos(corpus_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "lines"
    train_lm(run_dir, corpus_file, **{"data.layout": "lines", "tokenizer.kind": "word"})
    run = lm_lib.load_run(run_dir)
    logits = run.model.get_layer("logits")
    bias = np.zeros(run.tokenizer.vocabulary_size, np.float32)
    bias[EOS_ID] = 1e4  # force [EOS]
    logits.set_weights([np.zeros_like(logits.get_weights()[0]), bias])
    signature = lm_lib.serving_signatures(run).signatures["generate"]
    assert generate(signature, ["the cat", ""], max_tokens=50) == ["", ""]
    metrics = lm_lib.evaluate(run_dir, str(corpus_file))
    words = len(TEXT.replace(".", " .").split())  # the script split separates punctuation
    assert metrics["tokens"] == words + TEXT.count("\n")  # words + one [EOS] a line
