"""`--init-from`: a sentiment classifier starts from a language model's embedding and stack.

The language-model side of the transfer: the run directory it reads (vocabulary,
embedding, RNNStack weights). It drives the sentiment task's public API.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import sentiment_rows, train_tiny, write_tsv
from textrnn import language_model as lm_lib
from textrnn.config import load_config
from textrnn.errors import ConfigError
from textrnn.tokenizers import Tokenizer

from .tiny_lm import train_lm


@pytest.fixture(scope="module")
def phrase_lm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """A one-layer word LM (embedding 8, 4 units) on the tiny sentiment phrases."""
    base = tmp_path_factory.mktemp("phrase_lm")
    rows = sentiment_rows(40, seed=1)
    text_file = base / "text.txt"
    text_file.write_text("".join(text + "\n" for text, _ in rows), encoding="utf-8")
    train_lm(
        base / "lm",
        text_file,
        **{
            "data.layout": "lines",
            "tokenizer.kind": "word",
            "model.embedding_dim": 8,
            "model.stack.units": 4,
            "model.stack.num_layers": 1,
        },
    )
    return base / "lm", rows


def test_sentiment_init_from_copies_embedding_and_stack(phrase_lm, tmp_path: Path) -> None:
    from textrnn import sentiment
    from textrnn.sentiment.transfer import copy_tokenizer

    lm_run, rows = phrase_lm
    lm = lm_lib.load_run(lm_run)
    train_tsv = write_tsv(tmp_path / "train.tsv", rows)
    run_dir = tmp_path / "sentiment"
    config = load_config(
        sentiment.Config,
        None,
        {
            "data.train": str(train_tsv),
            "model.embedding_dim": 8,
            "model.stack.units": 4,
            "model.init_from": str(lm_run),
        },
    )
    copy_tokenizer(lm_run, run_dir)
    tokenizer = Tokenizer.load(run_dir)
    assert tokenizer.vocabulary == lm.tokenizer.vocabulary
    model = sentiment.build_model(config, tokenizer, init_from=str(lm_run), compile=False)
    np.testing.assert_array_equal(
        model.get_layer("embedding").get_weights()[0],
        lm.model.get_layer("embedding").get_weights()[0],
    )
    ours = model.get_layer("rnn_stack").recurrent_layers[0].get_weights()
    theirs = lm.model.get_layer("rnn_stack").recurrent_layers[0].get_weights()
    for a, b in zip(ours, theirs, strict=False):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sentiment_train_init_from_end_to_end(phrase_lm, tmp_path: Path) -> None:
    lm_run, rows = phrase_lm
    train_tsv = write_tsv(tmp_path / "train.tsv", rows)
    run_dir = tmp_path / "sentiment"
    metrics = train_tiny(
        run_dir / "full",
        train_tsv,
        **{"model.embedding_dim": 8, "model.stack.units": 4, "model.init_from": str(lm_run)},
    )
    assert "val_accuracy" in metrics
    assert (run_dir / "full" / "vocab.txt").read_text() == (lm_run / "vocab.txt").read_text()
    with pytest.raises(ConfigError, match="model.stack.units"):
        train_tiny(
            run_dir / "bad",
            train_tsv,
            **{"model.embedding_dim": 8, "model.stack.units": 6, "model.init_from": str(lm_run)},
        )


def test_lm_init_from_fine_tunes_with_the_vocabulary_and_weights(phrase_lm, tmp_path: Path):
    """`lm train --init-from`: the new run copies the vocabulary and starts from the weights."""
    lm_run, rows = phrase_lm
    source = lm_lib.load_run(lm_run)
    text_file = tmp_path / "new.txt"
    text_file.write_text("".join(text + "\n" for text, _ in reversed(rows)), encoding="utf-8")
    shape = {
        "data.layout": "lines",
        "model.embedding_dim": 8,
        "model.stack.units": 4,
        "model.stack.num_layers": 1,
    }
    config = load_config(lm_lib.Config, None, {**shape, "model.init_from": str(lm_run)})
    start = lm_lib.build_model(config, source.tokenizer, compile=False, init_from=str(lm_run))
    for ours, theirs in zip(start.get_weights(), source.model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    train_lm(tmp_path / "tuned", text_file, **shape, **{"model.init_from": str(lm_run)})
    assert Tokenizer.load(tmp_path / "tuned").vocabulary == source.tokenizer.vocabulary
    wider = load_config(lm_lib.Config, None, {**shape, "model.stack.units": 6})
    with pytest.raises(ConfigError, match=r"model\.stack\.units 6 vs 4"):
        lm_lib.build_model(wider, source.tokenizer, compile=False, init_from=str(lm_run))
