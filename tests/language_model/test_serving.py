"""textrnn.language_model.serving: the step signatures' shapes; an export answers alike in a
fresh process without the run, and through `textrnn generate`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import tensorflow as tf
from typer.testing import CliRunner

from helpers import PYTHON, SUBPROCESS_TIMEOUT, subprocess_env
from textrnn import export
from textrnn import language_model as lm_lib
from textrnn.tasks import ServingParts
from textrnn.tokenizers import BOS_ID, EOS_ID

from .tiny_lm import generate


def test_step_signature_shapes(char_parts: ServingParts) -> None:
    signatures = char_parts.signatures
    primed = signatures["tokenize"](text=tf.constant(["ab", ""]))
    assert primed["token_ids"].shape[0] == 2 and list(primed["lengths"].numpy()) == [3, 1]
    out = signatures["step"](
        token_ids=tf.constant([BOS_ID, BOS_ID]), states=primed["initial_states"]
    )
    assert out["logits"].shape == (2, char_parts.inference.vocabulary_size)
    assert out["states"].shape == (2, 4, 8)  # 2 layers x (h, c), 8 units


def test_export_reloads_in_a_fresh_process_without_the_run(char_run: Path, tmp_path: Path) -> None:
    run_copy = tmp_path / "run"
    shutil.copytree(char_run, run_copy)
    serving = export.load_serving(run_copy)
    options = lm_lib.GenerationOptions(max_tokens=25, temperature=0.9, top_k=5, top_p=0.95, seed=42)
    expected = [
        text for _, text in lm_lib.generate_texts(serving, ["to be", "", "zz\u00e9"], options)
    ]
    expected_score = serving.signatures["score"](text=tf.constant(["the cat"]))[
        "log_likelihood"
    ].numpy()
    version = export.export_run(run_copy, tmp_path / "exports")
    shutil.rmtree(run_copy)
    script = f"""
import json, tensorflow as tf, tensorflow_text  # noqa: F401
loaded = tf.saved_model.load({str(version)!r})
gen = loaded.signatures["serving_default"]
out = gen(prompt=tf.constant(["to be", "", "zz\\u00e9"]), max_tokens=tf.constant(25),
          temperature=tf.constant(0.9), top_k=tf.constant(5), top_p=tf.constant(0.95),
          seed=tf.constant(42, tf.int64))
score = loaded.signatures["score"](text=tf.constant(["the cat"]))
print(json.dumps({{"text": [t.decode() for t in out["text"].numpy()],
                  "score": float(score["log_likelihood"].numpy()[0]),
                  "signatures": sorted(loaded.signatures)}}))
"""
    result = subprocess.run(
        [PYTHON, "-c", script],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert reloaded["text"] == expected
    assert reloaded["score"] == pytest.approx(float(expected_score[0]), rel=1e-5)
    assert {"serving_default", "generate", "score", "step"} <= set(reloaded["signatures"])
    # `textrnn generate` on the export, batched and streamed through `step`: the same text.
    from textrnn.cli.main import app

    args = [
        "generate",
        "--model",
        str(version),
        "--prompt",
        "to be",
        "--max-tokens",
        "25",
        "--temperature",
        "0.9",
        "--top-k",
        "5",
        "--top-p",
        "0.95",
        "--seed",
        "42",
    ]
    for extra in ([], ["--stream"]):
        result = CliRunner().invoke(app, args + extra)
        assert result.exit_code == 0, result.output
        assert result.output == "to be" + expected[0] + "\n"


def test_merged_rows_continue_each_stream_as_generate_would(char_parts: ServingParts) -> None:
    """`prime` + `generate_rows`: streams with their own knobs and seeds, at different steps,
    joining and leaving, padded with rows that take no tokens, each give `generate`'s text."""
    import numpy as np

    signatures = char_parts.signatures
    streams = [  # prompt, max_tokens, temperature, top_k, top_p, seed, batch row in generate
        ("to be", 30, 1.0, 0, 1.0, 5, 0),
        ("the", 17, 0.8, 5, 0.9, 6, 1),
        ("", 25, 0.0, 0, 1.0, 7, 0),
    ]
    expected = []
    for prompt, max_tokens, temperature, top_k, top_p, seed, row in streams:
        batch = ["x"] * row + [prompt]  # the stream is row `row` of this request
        expected.append(
            generate(signatures["generate"], batch, max_tokens, temperature, top_k, top_p, seed)[
                row
            ]
        )
    primed = signatures["prime"](prompt=tf.constant([s[0] for s in streams]))
    logits, states = primed["logits"].numpy(), primed["states"].numpy()
    generated: list[list[int]] = [[] for _ in streams]
    texts = [""] * len(streams)
    ended = [False] * len(streams)  # drew [EOS]
    open_rows = [0]  # stream 0 starts alone; the others join on later calls
    for call, size in enumerate([1, 2, 4, 8, 3, 16, 16, 16]):
        open_rows += [call] if call in (1, 2) else []
        rows = [i for i in open_rows if len(generated[i]) < streams[i][1] and not ended[i]]
        if not rows:
            break
        pad = 4 - len(rows)  # padding rows that take nothing (one batch size: one compile)
        previous = np.zeros([4, max(len(generated[i]) for i in rows)], np.int32)
        for j, i in enumerate(rows):
            previous[j, : len(generated[i])] = generated[i]

        def column(values, dtype, fill=0, pad=pad):
            return tf.constant(list(values) + [fill] * pad, dtype)

        def stacked(array, rows=rows, pad=pad):
            return tf.constant(np.concatenate([array[rows], np.zeros_like(array[:pad])]))

        outputs = signatures["generate_rows"](
            logits=stacked(logits),
            states=stacked(states),
            start=column([len(generated[i]) for i in rows], tf.int32),
            tokens=column([min(size, streams[i][1] - len(generated[i])) for i in rows], tf.int32),
            temperature=column([streams[i][2] for i in rows], tf.float32, 1.0),
            top_k=column([streams[i][3] for i in rows], tf.int32),
            top_p=column([streams[i][4] for i in rows], tf.float32, 1.0),
            seed=column([streams[i][5] for i in rows], tf.int64),
            row=column([streams[i][6] for i in rows], tf.int32),
            previous=tf.constant(previous),
        )
        counts = outputs["num_tokens"].numpy()
        assert list(counts[len(rows) :]) == [0] * pad
        for j, i in enumerate(rows):
            generated[i] += list(outputs["token_ids"].numpy()[j, : counts[j]])
            ended[i] = generated[i][-1] == EOS_ID
            logits[i], states[i] = outputs["logits"].numpy()[j], outputs["states"].numpy()[j]
            texts[i] = outputs["text"].numpy()[j].decode("utf-8")
    assert all(ended[i] or len(generated[i]) == s[1] for i, s in enumerate(streams))
    assert texts == expected
    assert len(set(expected)) == 3
