"""Language-model training throughput: textrnn's RNNStack against plain Keras layers (issue 7).

Trains Embedding(vocab, E) -> N x LSTM/GRU(units) -> Dense(vocab) on synthetic
tokens with Adam and sparse cross-entropy, once through textrnn's `RNNStack`
(whatever `--implementation` resolves to on this machine) and once with plain
`keras.layers.LSTM` / `GRU`, alternating the two contenders `--rounds` times
in one process (the machine is shared and noisy) and quoting medians.

Both models read the same `tf.data` pipeline with autotuning off and one
private thread, so the input pipeline does not steal a core from training.

    python bench/lm_throughput.py --cell lstm --units 256 --layers 2 --batch-size 64 --seq-len 100
    python bench/lm_throughput.py --cell gru --units 650 --layers 2 --batch-size 20 --seq-len 35 \\
        --vocab 10000 --embedding-dim 650 --json

With `--json` the last line is one JSON object with `textrnn_tokens_per_s`,
`keras_tokens_per_s`, `ratio` and `textrnn_gflops` / `keras_gflops` (model
arithmetic: 3 x the forward multiply-adds x 2 per token).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from textrnn.rnn_stack import RNNStack  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed steps before the first round"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; medians are quoted"
    )
    parser.add_argument("--implementation", choices=("auto", "fast", "keras"), default="auto")
    parser.add_argument(
        "--mask", action="store_true", help="Embedding(mask_zero=True), as the LM task"
    )
    parser.add_argument("--skip-keras", action="store_true", help="time textrnn only")
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


def build(args: argparse.Namespace, textrnn: bool) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(args.seq_len,), dtype="int32")
    x = keras.layers.Embedding(args.vocab, args.embedding_dim, mask_zero=args.mask)(inputs)
    if textrnn:
        x = RNNStack(
            cell=args.cell,
            num_layers=args.layers,
            units=args.units,
            implementation=args.implementation,
        )(x)
    else:
        layer = keras.layers.LSTM if args.cell == "lstm" else keras.layers.GRU
        for _ in range(args.layers):
            x = layer(args.units, return_sequences=True)(x)
    logits = keras.layers.Dense(args.vocab)(x)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def timed_fit(model: keras.Model, data: tf.data.Dataset, steps: int) -> float:
    started = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return time.perf_counter() - started


def main(argv=None) -> dict:
    args = parse_args(argv)
    data = dataset(args)
    tokens = args.steps * args.batch_size * args.seq_len
    contenders = {"textrnn": build(args, True)}
    if not args.skip_keras:
        contenders["keras"] = build(args, False)
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for name, model in contenders.items():
        started = time.perf_counter()
        model.fit(data, epochs=1, steps_per_epoch=args.warmup, verbose=0)
        print(
            f"{name}: warm-up {args.warmup} steps in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
    for round_index in range(args.rounds):
        for name, model in contenders.items():
            rate = tokens / timed_fit(model, data, args.steps)
            rates[name].append(rate)
            print(f"round {round_index + 1} {name}: {rate:,.0f} tokens/s", file=sys.stderr)
    flops = flops_per_token(args)
    result = {
        "cell": args.cell,
        "units": args.units,
        "layers": args.layers,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "vocab": args.vocab,
        "embedding_dim": args.embedding_dim,
        "implementation": contenders["textrnn"].layers[2].resolved_implementation,
    }
    for name, values in rates.items():
        median = statistics.median(values)
        result[f"{name}_tokens_per_s"] = round(median, 1)
        result[f"{name}_gflops"] = round(median * flops / 1e9, 2)
        result[f"{name}_runs"] = [round(v) for v in values]
    if "keras" in rates:
        result["ratio"] = round(result["textrnn_tokens_per_s"] / result["keras_tokens_per_s"], 3)
    for key in (
        "textrnn_tokens_per_s",
        "keras_tokens_per_s",
        "ratio",
        "textrnn_gflops",
        "keras_gflops",
    ):
        if key in result:
            print(f"{key}: {result[key]}")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
