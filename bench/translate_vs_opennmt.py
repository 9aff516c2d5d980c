"""textrnn against OpenNMT-tf at the Multi30k recipe's shape: `bench/translate.py
--opennmt-python PY` (PY: the python of a scratch venv with opennmt-tf 2.32 and
TensorFlow 2.13, not a textrnn dependency).

One run alternates worker processes, textrnn, OpenNMT-tf, textrnn, ... (`--rounds`
pairs), so both see the same machine load; each worker trains `--train-steps` timed
steps of 64 pairs (fresh weights; textrnn after a warm-up pass over the same batches, so
XLA's per-shape compilations, paid once per shape in a real training, are not timed),
then decodes the same 1,000 validation sentences (sorted by length, batch 64, beam 5).
Both toolkits read the same token sequences: the run's WordPiece tokenizers encode the
data once and OpenNMT-tf gets them as space-separated tokens with the same vocabularies
(`bench/opennmt_runner.py`).

Decoding runs exactly `--decode-length` (80) tokens per sentence in both: the end token
is blocked until then (textrnn: its output bias for it set to -100, never among the beam's
best, and the cap set to 80, where the search forces it;
OpenNMT-tf: minimum = maximum decoding length), so both do the same work whatever the
weights (OpenNMT-tf's are untrained). Printed: pairs/s and sentences/s of each, their
ratios (textrnn / OpenNMT-tf), medians over the rounds, and the machine load.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from textrnn import data as data_lib
from textrnn import translation
from textrnn.tokenizers import EOS_ID, RESERVED_TOKENS

HERE = Path(__file__).resolve().parent
BATCH = 64


# ----------------------------------------------------------------------------- data


def write_token_files(run, directory: Path, train_pairs: int, sentences: int) -> list[str]:
    """The training subset and the validation sources as token files and vocabularies for
    OpenNMT-tf; returns the validation sentences (raw, in the written order) for textrnn."""
    config = run.config
    pairs = translation.read_pairs(
        config.data.source,
        config.data.target,
        config.data.train,
        config.data.source_column,
        config.data.target_column,
        config.data.encoding,
    )
    valid = [
        line
        for line in data_lib.read_lines(config.data.valid_source, config.data.encoding)
        if line.strip()
    ][:sentences]
    lengths = run.source_tokenizer.tokenize(tf.constant(valid)).row_lengths().numpy()
    valid = [valid[i] for i in np.argsort(lengths, kind="stable")]  # sorted, as evaluate
    files = {
        "train.src": (run.source_tokenizer, pairs.sources[:train_pairs]),
        "train.tgt": (run.target_tokenizer, pairs.targets[:train_pairs]),
        "valid.src": (run.source_tokenizer, valid),
    }
    for name, (tokenizer, texts) in files.items():
        ids = tokenizer.tokenize(tf.constant(texts), 62)
        tokens = tf.ragged.map_flat_values(tokenizer.id_to_token, ids).to_list()
        lines = [" ".join(token.decode() for token in row) for row in tokens]
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name, tokenizer in (
        ("vocab.src", run.source_tokenizer),
        ("vocab.tgt", run.target_tokenizer),
    ):
        words = tokenizer.vocabulary[len(RESERVED_TOKENS) :]  # OpenNMT-tf adds its own
        (directory / name).write_text("\n".join(words) + "\n", encoding="utf-8")
    return valid


# ----------------------------------------------------------------------------- textrnn worker


def textrnn_train_speed(config, tokenizers, steps: int, pairs_limit: int) -> tuple[float, float]:
    """(pairs/s, CPU seconds per pair) of textrnn's training step (`train_on_batch`, fresh
    weights)."""
    pairs = translation.read_pairs(
        config.data.source,
        config.data.target,
        config.data.train,
        config.data.source_column,
        config.data.target_column,
        config.data.encoding,
    )
    pairs = translation.Pairs(pairs.sources[:pairs_limit], pairs.targets[:pairs_limit])
    encoded = translation.encode_pairs(*tokenizers, pairs, config)
    longest = max(config.data.source_max_length, config.data.target_max_length)
    dataset = data_lib.batched_pairs(
        encoded.source_ids,
        encoded.target_ids,
        BATCH,
        longest,
        shuffle=True,
        seed=config.training.seed,
    ).repeat()
    model = translation.build_model(config, tokenizers, total_steps=2 * steps)
    batches = list(dataset.take(steps))
    # Warm-up on the very batches timed next: tracing, and XLA's compilation of each padded
    # (length, source length) shape of the fast loops, which a training run pays once per
    # shape (a few dozen), not once per step.
    for inputs, targets in batches:
        model.train_on_batch(inputs, targets)
    rows = 0
    started, cpu = time.perf_counter(), time.process_time()
    for inputs, targets in batches:
        model.train_on_batch(inputs, targets)
        rows += int(targets.shape[0])
    return rows / (time.perf_counter() - started), (time.process_time() - cpu) / rows


def textrnn_decode_speed(run, sentences: list[str], length: int) -> tuple[float, float, float]:
    """(sentences/s, CPU seconds per sentence, mean output length) of
    `Translator.translate` (the exports' function) at beam 5, batch 64, every sentence
    decoded to `length` tokens (end token blocked until the cap)."""
    decoder = run.model.get_layer("decoder")
    bias = decoder.output_layer.bias
    bias.assign(tf.tensor_scatter_nd_update(bias, [[EOS_ID]], [-100.0]))
    translator = translation.Translator.from_run(run)

    def translate(texts):
        return translator.translate(
            tf.constant(texts),
            tf.constant(5),
            tf.constant(length),
            tf.constant(0.6),
            tf.constant(100.0),
            tf.constant(0),
            tf.constant(0.0),
        )

    translate(sentences[:BATCH])  # trace once
    tokens = 0
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(sentences), BATCH):
        result = translate(sentences[start : start + BATCH])
        tokens += int(tf.reduce_sum(result["target_lengths"]))
    cpu_per_sentence = (time.process_time() - cpu) / len(sentences)
    return (
        len(sentences) / (time.perf_counter() - started),
        cpu_per_sentence,
        tokens / len(sentences),
    )


def textrnn_worker(args: argparse.Namespace) -> None:
    run = translation.load_run(args.model)
    sentences = (Path(args.data_dir) / "sentences.json").read_text(encoding="utf-8")
    speed, cpu = textrnn_train_speed(
        run.config, (run.source_tokenizer, run.target_tokenizer), args.train_steps, args.train_pairs
    )
    result = {"train_pairs_per_s": speed, "train_cpu_ms_per_pair": 1000 * cpu}
    if not args.skip_decode:
        speed, cpu, length = textrnn_decode_speed(run, json.loads(sentences), args.decode_length)
        result["beam5_sentences_per_s"] = speed
        result["beam5_cpu_ms_per_sentence"] = 1000 * cpu
        result["mean_output_length"] = length
    print(json.dumps(result))


# ----------------------------------------------------------------------------- driver


def extract_revision(ref: str, directory: Path) -> str:
    """The `textrnn` package at git `ref`, extracted under `directory`; returns its root."""
    root = directory / "baseline_code"
    root.mkdir(exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", ref, "textrnn"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return str(root)


def run_worker(command: list[str], name: str) -> dict:
    output = subprocess.run(command, capture_output=True, text=True)
    if output.returncode:
        tail = (output.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"{name} worker failed: {tail}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> None:
    run = translation.load_run(args.model)
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    train_pairs = (args.train_steps + 10) * BATCH * 4
    sentences = write_token_files(run, data, train_pairs, args.decode_sentences)
    (data / "sentences.json").write_text(json.dumps(sentences), encoding="utf-8")
    del run
    common = ["--train-steps", str(args.train_steps), "--decode-length", str(args.decode_length)]
    if args.skip_decode:
        common.append("--skip-decode")
    textrnn = [sys.executable, str(HERE / "translate.py"), "--opennmt-worker", "--model"]
    textrnn += [args.model, "--data-dir", str(data), "--train-pairs", str(train_pairs), *common]
    opennmt = [args.opennmt_python, str(HERE / "opennmt_runner.py"), "--data", str(data), *common]
    workers = {"textrnn": textrnn, "opennmt": opennmt}
    if args.baseline_ref:  # textrnn before (the code at that git ref) in the same rounds
        workers = {
            "textrnn_before": [*textrnn, "--code", extract_revision(args.baseline_ref, data)]
        }
        workers.update(textrnn=textrnn, opennmt=opennmt)
    rounds: dict[str, list[dict]] = {name: [] for name in workers}
    loads = [os.getloadavg()[0]]
    for index in range(args.rounds):
        for name, command in workers.items():
            rounds[name].append(run_worker(command, name))
            loads.append(os.getloadavg()[0])
            print(f"round {index + 1} {name}: {rounds[name][-1]}", file=sys.stderr, flush=True)
    report(args, rounds, loads)


def report(args: argparse.Namespace, rounds: dict[str, list[dict]], loads: list[float]) -> None:
    def median(which: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[which])

    results = {
        "textrnn_train_pairs_per_s": median("textrnn", "train_pairs_per_s"),
        "opennmt_train_pairs_per_s": median("opennmt", "train_pairs_per_s"),
    }
    results["train_ratio"] = (
        results["textrnn_train_pairs_per_s"] / results["opennmt_train_pairs_per_s"]
    )
    if not args.skip_decode:
        results["textrnn_beam5_sentences_per_s"] = median("textrnn", "beam5_sentences_per_s")
        results["opennmt_beam5_sentences_per_s"] = median("opennmt", "beam5_sentences_per_s")
        results["decode_ratio"] = (
            results["textrnn_beam5_sentences_per_s"] / results["opennmt_beam5_sentences_per_s"]
        )
    if "textrnn_before" in rounds:
        before = {"train": "train_pairs_per_s", "decode": "beam5_sentences_per_s"}
        for name, key in before.items():
            if name == "decode" and args.skip_decode:
                continue
            results[f"before_{key}"] = median("textrnn_before", key)
            results[f"before_{name}_ratio"] = results[f"before_{key}"] / median("opennmt", key)
            results[f"{name}_after_over_before"] = median("textrnn", key) / results[f"before_{key}"]
    # CPU time per pair / sentence (all threads of the worker): steadier than wall time
    # when other jobs share the cores; ratios as speed ratios (OpenNMT-tf's / textrnn's).
    for name, key in (("train", "train_cpu_ms_per_pair"), ("decode", "beam5_cpu_ms_per_sentence")):
        if all(key in r for runs in rounds.values() for r in runs):
            for which in rounds:
                results[f"{which}_{key}"] = median(which, key)
            results[f"{name}_cpu_ratio"] = median("opennmt", key) / median("textrnn", key)
    results = {key: round(value, 3) for key, value in results.items()}
    extra = {
        "rounds": args.rounds,
        "baseline_ref": args.baseline_ref,
        "train_steps": args.train_steps,
        "decode_sentences": args.decode_sentences,
        "decode_length": args.decode_length,
        "cpu_count": os.cpu_count(),
        "load_1min": [round(x, 2) for x in loads],
        "runs": rounds,
    }
    if args.json:
        print(json.dumps({**results, **extra}))
        return
    print(
        f"{os.cpu_count()} CPU(s), 1-min load {min(loads):.1f}-{max(loads):.1f}; "
        f"{args.rounds} alternating round(s), medians; batch {BATCH}"
    )
    for key, value in results.items():
        print(f"{key:<32}{value:>10.3f}")
