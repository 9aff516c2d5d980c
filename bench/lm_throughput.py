"""Language-model training throughput: textrnn against plain Keras and PyTorch (issue 7).

Trains Embedding(vocab, E) -> N x LSTM/GRU(units) -> Dense(vocab) on synthetic
tokens with Adam and sparse cross-entropy:

- `textrnn`: the language-model task's own model and optimizer
  (`language_model.build_model`: `RNNStack` with whatever implementation it
  resolves to on this machine, the task's loss, XLA flag and `make_optimizer`);
- `keras`: the same shape from plain `keras.layers.LSTM` / `GRU`;
- `torch` (with `--torch-python`): `bench/torch_baseline.py` run by a Python
  that has PyTorch (not a textrnn dependency), one subprocess per round.

The contenders alternate for `--rounds` rounds (the machine is shared and
noisy); throughputs are medians and ratios are medians of per-round ratios.
Both TensorFlow models read the same `tf.data` pipeline with autotuning off and
one private thread, so the input pipeline does not steal a core from training.

    python bench/train_throughput.py --cell lstm --units 256 --layers 2 --batch-size 64 \\
        --seq-len 100
    python bench/train_throughput.py --cell gru --units 650 --layers 2 --batch-size 20 \\
        --seq-len 35 --vocab 10000 --embedding-dim 650 \\
        --torch-python /tmp/torchvenv/bin/python --json

`--precision bfloat16` times every contender in mixed bfloat16 (float32
variables and logits; Keras's `mixed_bfloat16` policy, PyTorch's CPU autocast),
where the CPU has bfloat16 instructions (AMX, AVX512-BF16) the fair comparison
for a `--mixed-precision mixed_bfloat16` run; textrnn in float32 runs too
(`textrnn_float32_tokens_per_s`, `ratio_vs_float32`: what bfloat16 buys).

(`bench/train_throughput.py` runs this module when given `--seq-len`.) With
`--json` the last line is one JSON object with `textrnn_tokens_per_s`,
`keras_tokens_per_s`, `ratio`, `textrnn_gflops` / `keras_gflops` (model
arithmetic: 3 x the forward multiply-adds x 2 per token), and with
`--torch-python` also `torch_tokens_per_s` and `ratio_vs_torch`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textrnn import config as config_lib  # noqa: E402
from textrnn import language_model  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed steps before the first round"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds; medians are quoted"
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="bfloat16: every contender in mixed bfloat16 (Keras's mixed_bfloat16 policy, "
        "PyTorch's CPU autocast), float32 variables",
    )
    parser.add_argument("--skip-keras", action="store_true", help="time textrnn (and torch) only")
    parser.add_argument(
        "--torch-python",
        help="a Python with torch installed: also time bench/torch_baseline.py, alternating",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per torch round")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    return parser.parse_args(argv)


def flops_per_token(args: argparse.Namespace) -> float:
    """Training FLOPs per token: forward multiply-adds x 2 (FLOPs) x 3 (forward + backward)."""
    gates = 4 if args.cell == "lstm" else 3
    macs, features = 0, args.embedding_dim
    for _ in range(args.layers):
        macs += (features + args.units) * gates * args.units
        features = args.units
    macs += args.units * args.vocab
    return 6.0 * macs


def dataset(args: argparse.Namespace) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, args.vocab, size=(args.batch_size * 8, args.seq_len + 1)).astype(
        "int32"
    )
    data = tf.data.Dataset.from_tensor_slices((tokens[:, :-1], tokens[:, 1:]))
    data = data.batch(args.batch_size, drop_remainder=True).cache().repeat()
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    return data.with_options(options)


def textrnn_model(args: argparse.Namespace) -> keras.Model:
    """The language-model task's model, compiled by the task: no dropout, constant Adam 1e-3."""
    config = config_lib.load_config(
        language_model.Config,
        None,
        {
            "model.embedding_dim": args.embedding_dim,
            "model.embedding_dropout": 0.0,
            "model.output_dropout": 0.0,
            "model.tie_embeddings": False,
            "model.stack.cell": args.cell,
            "model.stack.num_layers": args.layers,
            "model.stack.units": args.units,
            "model.stack.dropout": 0.0,
            "training.batch_size": args.batch_size,
            "training.optimizer": "adam",
            "training.learning_rate": 1e-3,
            "training.lr_schedule": "constant",
            "training.clipnorm": 0.0,
            "training.strategy": "cpu",
        },
    )
    keras.utils.set_random_seed(0)
    with _policy(args):
        return language_model.build_model(config, SimpleNamespace(vocabulary_size=args.vocab))


@contextlib.contextmanager
def _policy(args: argparse.Namespace):
    """Build under `--precision`'s Keras policy (as `textrnn.training.fit` does for a recipe)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if args.precision == "bfloat16" else "float32"
    )
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def keras_model(args: argparse.Namespace) -> keras.Model:
    keras.utils.set_random_seed(0)
    with _policy(args):
        inputs = keras.Input(shape=(args.seq_len,), dtype="int32")
        x = keras.layers.Embedding(args.vocab, args.embedding_dim)(inputs)
        layer = keras.layers.LSTM if args.cell == "lstm" else keras.layers.GRU
        for _ in range(args.layers):
            x = layer(args.units, return_sequences=True)(x)
        # float32 logits, as textrnn's output layer under mixed precision
        model = keras.Model(inputs, keras.layers.Dense(args.vocab, dtype="float32")(x))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def timed_fit(model: keras.Model, data: tf.data.Dataset, steps: int, tokens: int) -> float:
    started = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return tokens / (time.perf_counter() - started)


def torch_round(args: argparse.Namespace) -> float:
    """One round of bench/torch_baseline.py in a fresh process (its own warm-up untimed)."""
    command = [
        args.torch_python,
        str(ROOT / "bench" / "torch_baseline.py"),
        *("--cell", args.cell, "--units", str(args.units), "--layers", str(args.layers)),
        *("--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len)),
        *("--vocab", str(args.vocab), "--embedding-dim", str(args.embedding_dim)),
        *("--steps", str(args.steps), "--warmup", str(args.warmup), "--rounds", "1", "--json"),
        *(["--bf16"] if args.precision == "bfloat16" else []),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=args.timeout, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"torch baseline failed ({result.returncode}): {result.stderr[-2000:]}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["torch_tokens_per_s"])


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def main(argv=None) -> dict:
    args = parse_args(argv)
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    data = dataset(args)
    tokens = args.steps * args.batch_size * args.seq_len
    models = {"textrnn": textrnn_model(args)}
    if args.precision != "float32":  # what the lower precision buys, in the same run
        models["textrnn_float32"] = textrnn_model(
            argparse.Namespace(**{**vars(args), "precision": "float32"})
        )
    if not args.skip_keras:
        models["keras"] = keras_model(args)
    for name, model in models.items():
        started = time.perf_counter()
        model.fit(data, epochs=1, steps_per_epoch=args.warmup, verbose=0)
        log(f"{name}: warm-up {args.warmup} steps in {time.perf_counter() - started:.1f} s")
    measures = {
        name: (lambda model=model: timed_fit(model, data, args.steps, tokens))
        for name, model in models.items()
    }
    if args.torch_python:
        measures["torch"] = lambda: torch_round(args)
    rates: dict[str, list[float]] = {name: [] for name in measures}
    for round_index in range(args.rounds):
        for name, measure in measures.items():
            rates[name].append(measure())
            log(f"round {round_index + 1} {name}: {rates[name][-1]:,.0f} tokens/s")
    flops = flops_per_token(args)
    stack = models["textrnn"].get_layer("rnn_stack")
    result = {
        "cell": args.cell,
        "units": args.units,
        "layers": args.layers,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "vocab": args.vocab,
        "embedding_dim": args.embedding_dim,
        "precision": args.precision,
        "implementation": stack.resolved_implementation,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    for name, values in rates.items():
        median = statistics.median(values)
        result[f"{name}_tokens_per_s"] = round(median, 1)
        result[f"{name}_gflops"] = round(median * flops / 1e9, 2)
        result[f"{name}_runs"] = [round(v) for v in values]
    if "keras" in rates:
        result["ratio"] = round(median_ratio(rates["textrnn"], rates["keras"]), 3)
    if "torch" in rates:
        result["ratio_vs_torch"] = round(median_ratio(rates["textrnn"], rates["torch"]), 3)
    if "textrnn_float32" in rates:
        result["ratio_vs_float32"] = round(
            median_ratio(rates["textrnn"], rates["textrnn_float32"]), 3
        )
    for key in (
        "textrnn_tokens_per_s",
        "keras_tokens_per_s",
        "torch_tokens_per_s",
        "ratio",
        "ratio_vs_torch",
        "ratio_vs_float32",
        "textrnn_gflops",
        "keras_gflops",
        "torch_gflops",
    ):
        if key in result:
            log(f"{key}: {result[key]}")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
