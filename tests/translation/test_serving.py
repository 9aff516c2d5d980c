"""Export: the SavedModel answers in a fresh process, after the run is deleted, exactly as
the run directory does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from helpers import SUBPROCESS_TIMEOUT
from textrnn import export, translation
from textrnn.translation import TranslationOptions

from .tiny import PAIRS

FRESH_PROCESS = (
    "import json, sys, tensorflow as tf, tensorflow_text\n"
    "m = tf.saved_model.load(sys.argv[1])\n"
    "src = tf.constant(json.loads(sys.argv[2]))\n"
    "d = m.signatures['serving_default'](source=src)\n"
    "t = m.signatures['translate'](source=src, beam_size=tf.constant(3), "
    "max_length=tf.constant(0))\n"
    "print(json.dumps({'default': [x.decode() for x in d['translation'].numpy()],\n"
    "  'translate': [x.decode() for x in t['translation'].numpy()],\n"
    "  'attention': list(t['attention'].shape)}))\n"
)


@pytest.mark.slow
def test_export_reloads_in_a_fresh_process_after_the_run_is_deleted(overfit_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(overfit_run[0], run_dir)
    sources = [s for s, _ in PAIRS[:6]] + ["an unseen ünïcode sentence !"]
    in_process = translation.translate_texts(
        translation.open_model(run_dir), sources, TranslationOptions(beam_size=3)
    )
    path = export.export_run(run_dir, tmp_path / "exports")
    shutil.rmtree(run_dir)
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(path), json.dumps(sources)],
        capture_output=True,
        text=True,
        timeout=3 * SUBPROCESS_TIMEOUT,
        check=True,  # traces two searches
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    expected = [r.translation for r in in_process]
    assert loaded["default"] == expected
    assert loaded["translate"] == expected
    assert loaded["attention"][0] == len(sources)
