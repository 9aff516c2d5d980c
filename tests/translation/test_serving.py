"""Export: the SavedModel answers in a fresh process, after the run is deleted, exactly as
the run directory does; its `translate` signature blocks repeated n-grams on request, and the
server answers requests without the newer inputs (their defaults) and 400s for bad ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, SUBPROCESS_TIMEOUT
from textrnn import export, translation
from textrnn.translation import TranslationOptions

from .tiny import PAIRS

FRESH_PROCESS = (
    "import json, sys, tensorflow as tf, tensorflow_text\n"
    "m = tf.saved_model.load(sys.argv[1])\n"
    "src = tf.constant(json.loads(sys.argv[2]))\n"
    "d = m.signatures['serving_default'](source=src)\n"
    "t = m.signatures['translate'](source=src, beam_size=tf.constant(3), "
    "max_length=tf.constant(0), no_repeat_ngram=tf.constant(0), "
    "coverage_penalty=tf.constant(0.0))\n"
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


# A model that loops: the compatibility fixture's tiny run ("Ein Mann Mannnnttttttt...").
LOOPING_RUN = REPO / "tests" / "fixtures" / "compat" / "translation" / "run"
LOOPING_SOURCES = ["A man rides a bike.", "Two dogs play in the snow.", "A zebra!"]
BLOCKING_PROCESS = (
    "import json, sys, tensorflow as tf, tensorflow_text\n"
    "m = tf.saved_model.load(sys.argv[1])\n"
    "out = {}\n"
    "for beam in (1, 3):\n"
    "  for n in (0, 2, 3):\n"
    "    t = m.signatures['translate'](source=tf.constant(json.loads(sys.argv[2])),\n"
    "      beam_size=tf.constant(beam), max_length=tf.constant(0),\n"
    "      no_repeat_ngram=tf.constant(n), coverage_penalty=tf.constant(0.3))\n"
    "    out[f'{beam} {n}'] = [[x.decode() for x in row[: int(k) - 1]] for row, k in\n"
    "      zip(t['target_tokens'].numpy(), t['target_lengths'].numpy())]\n"
    "print(json.dumps(out))\n"
)


def has_repeated_ngram(tokens: list[str], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.fixture(scope="module")
def looping_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The looping tiny run exported by the current code to <base>/translation/1."""
    workdir = tmp_path_factory.mktemp("looping")
    shutil.copytree(LOOPING_RUN, workdir / "run")
    return export.export_run(workdir / "run", workdir / "base" / "translation")


@pytest.mark.slow
def test_exported_translate_blocks_repeated_ngrams_in_a_fresh_process(looping_export):
    result = subprocess.run(
        [sys.executable, "-c", BLOCKING_PROCESS, str(looping_export), json.dumps(LOOPING_SOURCES)],
        capture_output=True,
        text=True,
        timeout=3 * SUBPROCESS_TIMEOUT,
        check=True,
    )
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    assert any(has_repeated_ngram(tokens, 2) for tokens in outputs["1 0"])  # greedy loops
    for beam in (1, 3):
        for n in (2, 3):
            for tokens in outputs[f"{beam} {n}"]:
                assert not has_repeated_ngram(tokens, n), (beam, n, tokens)


@pytest.mark.slow
def test_server_fills_defaults_for_old_requests_and_answers_400_for_bad_values(looping_export):
    from serving.helpers import predict, start_server

    server = start_server(looping_export.parent.parent)
    try:
        server.wait_ready()
        old = {"source": LOOPING_SOURCES, "beam_size": 2, "max_length": 0}
        status, answer = predict(
            server, {"signature_name": "translate", "inputs": old}, model="translation"
        )
        assert status == 200, answer
        explicit = {**old, "no_repeat_ngram": 0, "coverage_penalty": 0.0}  # the recipe's
        status, same = predict(
            server, {"signature_name": "translate", "inputs": explicit}, model="translation"
        )
        assert status == 200 and same["outputs"]["translation"] == answer["outputs"]["translation"]
        rows = [{"source": s, "beam_size": 2, "max_length": 0} for s in LOOPING_SOURCES]
        status, by_rows = predict(
            server, {"signature_name": "translate", "instances": rows}, model="translation"
        )
        assert status == 200, by_rows
        assert [r["translation"] for r in by_rows["predictions"]] == same["outputs"]["translation"]
        for bad, message in (
            ({"no_repeat_ngram": -1}, "no_repeat_ngram must be >= 0"),
            ({"no_repeat_ngram": 17}, "no_repeat_ngram must be <= 16"),
            ({"coverage_penalty": -0.5}, "coverage_penalty must be a finite number"),
            ({"coverage_penalty": 1e6}, "coverage_penalty must be a finite number"),
        ):
            status, error = predict(
                server,
                {"signature_name": "translate", "inputs": {**old, **bad}},
                model="translation",
            )
            assert status == 400 and message in error["error"], (bad, error)
        status, again = predict(
            server, {"signature_name": "translate", "inputs": old}, model="translation"
        )
        assert status == 200 and again == answer  # still serving
    finally:
        server.stop()
