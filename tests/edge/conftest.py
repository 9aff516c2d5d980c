"""LiteRT fixtures: one tiny run of each task and its float32 LiteRT export, once per session.

All read-only. The sentiment run is the top-level `sentiment_run`; the language model
and the translation runs are trained here with the tiny recipes of their test folders.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def litert_sentiment(sentiment_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sentiment_run` exported to LiteRT: the version directory."""
    from textrnn.edge.convert import export_litert

    return export_litert(sentiment_run.run_dir, tmp_path_factory.mktemp("litert") / "sentiment")


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2-layer character LSTM (tied embeddings), one epoch."""
    from language_model.tiny_lm import TEXT, train_lm

    directory = tmp_path_factory.mktemp("edge-lm")
    corpus = directory / "train.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    train_lm(directory / "run", corpus, **{"model.tie_embeddings": True})
    return directory / "run"


@pytest.fixture(scope="session")
def litert_lm(lm_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from textrnn.edge.convert import export_litert

    return export_litert(lm_run, tmp_path_factory.mktemp("litert") / "lm", max_length=8)


@pytest.fixture(scope="session")
def translation_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny translation recipe (bidirectional GRU encoder, additive attention), 4 epochs."""
    from translation.tiny import PAIRS, tiny_translation_config, write_pairs

    from textrnn import translation
    from textrnn.training.fit import train

    directory = tmp_path_factory.mktemp("edge-translation")
    source, target = write_pairs(directory, PAIRS * 4, name="repeated")
    config = tiny_translation_config(
        directory,
        **{
            "data.source": str(source),
            "data.target": str(target),
            "model.attention": "additive",
            "training.epochs": 4,
            "training.static_shapes": True,
        },
    )
    train(translation.TASK, config, directory / "run", echo=lambda line: None, verbose=0)
    return directory / "run"


@pytest.fixture(scope="session")
def litert_translation(translation_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from textrnn.edge.convert import export_litert

    return export_litert(translation_run, tmp_path_factory.mktemp("litert") / "translation")
