"""Translation fixtures: one untrained tiny translator and one trained tiny run per session.

Both are read-only: copy the run directory before changing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .tiny import PAIRS, tiny_translation_config, untrained, write_pairs


@dataclass(frozen=True)
class UntrainedTranslator:
    config: Any
    source_tokenizer: Any
    target_tokenizer: Any
    model: Any
    translator: Any  # its `translate` traced once for the session


@pytest.fixture(scope="session")
def untrained_translator(tmp_path_factory: pytest.TempPathFactory) -> UntrainedTranslator:
    """The default tiny model (seeded, untrained) and its `Translator`."""
    from textrnn import translation

    config, (source_tokenizer, target_tokenizer), model = untrained(
        tmp_path_factory.mktemp("untrained-translation")
    )
    translator = translation.Translator(config, source_tokenizer, target_tokenizer, model)
    return UntrainedTranslator(config, source_tokenizer, target_tokenizer, model, translator)


@pytest.fixture(scope="session")
def overfit_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The tiny model trained until it has learnt `PAIRS` by heart: (run_dir, metrics)."""
    from textrnn import translation
    from textrnn.training.fit import train

    directory = tmp_path_factory.mktemp("translation")
    # The pairs repeated: few epochs, little callback overhead.
    source, target = write_pairs(directory, PAIRS * 8, name="repeated")
    # Static shapes: one batch shape, so the recurrent loops compile once.
    config = tiny_translation_config(
        directory,
        **{
            "data.source": str(source),
            "data.target": str(target),
            "training.epochs": 8,
            "training.batch_size": 8,
            "training.lr_schedule": "constant",
            "training.static_shapes": True,
        },
    )
    run_dir = directory / "run"
    metrics = train(translation.TASK, config, run_dir, echo=lambda line: None, verbose=0)
    return run_dir, metrics
