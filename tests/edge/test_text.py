"""The host tokenizer gives the in-graph tokenizer's ids on every line of the corpora.

Every recipe's tokenizer settings (tasks/*/*.toml) over the bundled corpora
(tasks/*/data), and over the full corpora in ../shared/data (slow; set
TEXTRNN_SHARED_DATA when they live elsewhere). Vocabularies are learned from the
first lines of each corpus with the run's own learner.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tensorflow as tf
import tomllib

from helpers import REPO
from textrnn.config import TokenizerConfig
from textrnn.edge.parity import compare, host_twin
from textrnn.tokenizers import build_tokenizer

SHARED = Path(os.environ.get("TEXTRNN_SHARED_DATA", REPO.parent / "shared" / "data"))
VOCABULARY_LINES = 1000  # lines the vocabulary is learned from


def recipe_tokenizer(recipe: str) -> TokenizerConfig:
    section = tomllib.loads((REPO / "tasks" / recipe).read_text())["tokenizer"]
    section.pop("joint", None)
    return TokenizerConfig(**section)


def lines_of(paths: list[Path]) -> list[str]:
    return [line for path in paths for line in path.read_text(encoding="utf-8").splitlines()]


def check_corpus(recipe: str, paths: list[Path], directory: Path) -> None:
    lines = lines_of(paths)
    tokenizer = build_tokenizer(recipe_tokenizer(recipe), lines[:VOCABULARY_LINES], directory)
    report = compare(recipe, tokenizer, lines)
    assert report.ok, report.examples
    assert report.lines == len(lines) and report.tokens > 0


BUNDLED = {
    "sentiment/config.toml": ["sentiment/data/train.tsv", "sentiment/data/dev.tsv"],
    "sentiment/sst2.toml": ["sentiment/data/train.tsv", "sentiment/data/dev.tsv"],
    "lm/config.toml": ["lm/data/train.txt", "lm/data/valid.txt"],
    "lm/shakespeare_word.toml": ["lm/data/valid.txt"],
    "translation/config.toml": [f"translation/data/{n}" for n in ("train.en", "train.de")]
    + [f"translation/data/{n}" for n in ("val.en", "val.de")],
}
SHARED_CORPORA = {
    "sentiment/sst2.toml": ["sst2/train.tsv", "sst2/dev.tsv"],
    "lm/shakespeare_char.toml": [f"tinyshakespeare/{n}.txt" for n in ("train", "valid", "test")],
    "lm/shakespeare_word.toml": ["tinyshakespeare/valid.txt"],
    "translation/multi30k.toml": [f"multi30k/{n}" for n in ("train.en", "train.de", "val.en")]
    + ["multi30k/val.de"],
}


@pytest.mark.parametrize("recipe", sorted(BUNDLED))
def test_bundled_corpora(recipe, tmp_path):
    check_corpus(recipe, [REPO / "tasks" / p for p in BUNDLED[recipe]], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(SHARED_CORPORA))
def test_shared_corpora(recipe, tmp_path):
    paths = [SHARED / p for p in SHARED_CORPORA[recipe]]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"{SHARED} does not hold {', '.join(SHARED_CORPORA[recipe])}")
    check_corpus(recipe, paths, tmp_path)


@pytest.mark.parametrize(
    "config",
    [
        TokenizerConfig(kind="word"),
        TokenizerConfig(kind="subword", vocabulary_size=60),
        TokenizerConfig(kind="char", normalization="NFD", lowercase=False),
        TokenizerConfig(kind="word", split="whitespace", normalization="NFKD", lowercase=False),
        TokenizerConfig(kind="word", unknown_aliases=("<unk>",)),
    ],
    ids=["word", "subword", "char-nfd", "whitespace-nfkd", "aliases"],
)
def test_tricky_text(config, tmp_path):
    """Case folding (ß, İ, ﬁ, Σ), width forms, ignorables, CJK, symbols, spaces, long words."""
    texts = [
        "Straße İstanbul ﬁnance ΣΊΣΥΦΟΣ Ǆemal",
        "ＡＢＣ１２３ ① ｶﾀｶﾅ soft\u00adhyphen zero\u200bwidth",
        "東京タワーへ行きました。漢字かな!? a—b ‘quoted’ €5 #tag @user",
        "tabs\tand\nnew\rlines\x0bvertical\x0cfeed \u00a0nbsp\u2003em",
        "e\u0301 vs é, ﬀ ǅ ẞ ͅ ᾳ <unk> " + "x" * 120,
        "",
    ]
    tokenizer = build_tokenizer(config, texts + ["a film", "the cat"], tmp_path)
    host = host_twin(tokenizer)
    graph = tokenizer.tokenize(tf.constant(texts)).to_list()
    assert [host.tokenize(t) for t in texts] == graph
    truncated = tokenizer.tokenize(tf.constant(texts), 3).to_list()  # bytes cut as in the graph
    assert [host.tokenize(t, 3) for t in texts] == truncated
    detokenized = [t.decode() for t in tokenizer.detokenize(tf.ragged.constant(graph)).numpy()]
    assert [host.detokenize(ids) for ids in graph] == detokenized
