"""`textrnn plot`: training curves from a run's own logs (cli/plot.py, training/curves.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import REPO, sentiment_rows, train_tiny, write_tsv

from .invoke import assert_user_error as _assert_user_error
from .invoke import invoke as _invoke

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> tuple[int, int]:
    """A whole, decodable PNG; its (width, height)."""
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        image.load()
        return image.size


def _nothing_written(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory) -> Path:
    """A second tiny sentiment run, two epochs: something to compare `sentiment_run` with."""
    base = tmp_path_factory.mktemp("plot")
    train = write_tsv(base / "train.tsv", sentiment_rows(24, seed=3))
    valid = write_tsv(base / "valid.tsv", sentiment_rows(8, seed=4))
    train_tiny(base / "run2", train, valid, **{"training.epochs": 2})
    return base / "run2"


def test_plot_draws_a_run_and_names_the_file(runner, sentiment_run, tmp_path):
    out = tmp_path / "pictures" / "curves.png"
    result = _invoke(runner, ["plot", "--run-dir", sentiment_run.run_dir, "--out", out])
    assert result.exit_code == 0, result.output
    assert f"training curves drawn in {out}" in result.stdout
    width, height = _assert_png(out)
    assert width > height > 100  # loss and accuracy side by side
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # no temporaries left


def test_plot_compares_two_runs_on_one_figure(runner, sentiment_run, two_epoch_run, tmp_path):
    from textrnn.training.history import read_history

    history = read_history(two_epoch_run)
    assert history.task == "sentiment" and history.epochs == 2
    assert history.metrics() == ["loss", "accuracy"]
    assert history.series("validation", "loss")[0] == [1, 2]
    out = tmp_path / "compare.png"
    result = _invoke(
        runner,
        ["plot", "--run-dir", sentiment_run.run_dir, "--run-dir", two_epoch_run, "--out", out],
    )
    assert result.exit_code == 0, result.output
    _assert_png(out)


def test_plot_refuses_empty_foreign_and_untrained_directories(runner, tmp_path):
    out_dir = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a run\n")
    untrained = tmp_path / "untrained"  # a run directory without logs (an old layout)
    shutil.copytree(REPO / "tests" / "fixtures" / "compat" / "sentiment" / "run", untrained)
    cases = [
        (empty, "missing config.json"),
        (foreign, "is this a textrnn run directory?"),
        (untrained, "no training history"),
        (tmp_path / "absent", "run directory not found"),
    ]
    for run_dir, needle in cases:
        result = _invoke(runner, ["plot", "--run-dir", run_dir, "--out", out_dir / "c.png"])
        _assert_user_error(result, needle)
        assert _nothing_written(out_dir)


def test_plot_refuses_an_unknown_picture_format_before_drawing(runner, sentiment_run, tmp_path):
    result = _invoke(
        runner, ["plot", "--run-dir", sentiment_run.run_dir, "--out", tmp_path / "c.txt"]
    )
    _assert_user_error(result, "--out", ".png")
    assert not (tmp_path / "c.txt").exists()


@pytest.mark.slow
def test_plot_draws_the_language_model_and_translation_runs(runner, tmp_path):
    from language_model.tiny_lm import TEXT, train_lm
    from translation.tiny import tiny_translation_config

    from textrnn import translation
    from textrnn.training.fit import train

    corpus = tmp_path / "lm.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    train_lm(tmp_path / "lm", corpus, **{"training.epochs": 2})
    config = tiny_translation_config(tmp_path, **{"training.epochs": 2})
    train(translation.TASK, config, tmp_path / "mt", echo=lambda line: None, verbose=0)
    for name in ("lm", "mt"):
        out = tmp_path / f"{name}.png"
        result = _invoke(runner, ["plot", "--run-dir", tmp_path / name, "--out", out])
        assert result.exit_code == 0, result.output
        _assert_png(out)
