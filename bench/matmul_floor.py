"""The matrix-product floor of one language-model training step (issue 21).

A training step of Embedding -> N x LSTM/GRU -> Dense(vocab) is mostly matrix
products. This bench times, on this machine and in this run, each product a
step cannot avoid, with TensorFlow's own float32 kernels (oneDNN), each shape
in its fastest form:

- per layer: the input projection of all tokens, its two gradients, the
  recurrent weights' gradient (one product over all tokens each), and the two
  chains of `seq_len` dependent small products (forward `h W`, backward
  `d_gates W^T`), timed as a dependent loop, fused (one `(B, U) x (U, kU)`
  product a step) or per gate (k products side by side), with and without
  XLA: the fastest counts;
- the output layer: forward, input gradient, weight gradient.

Their sum is the time a step takes if it did nothing but those products, at
the speed TensorFlow's kernels reach here: no implementation on this
backend, in float32, can step faster. It then times textrnn's step and, with
`--torch-python`, PyTorch's (`bench/torch_baseline.py`), alternating with the
floor, and prints `best_ratio_vs_torch` = PyTorch's step / the floor: the
highest ratio to PyTorch that textrnn could reach at this shape.

    python bench/matmul_floor.py --cell lstm --units 650 --layers 2 --batch-size 20 \\
        --seq-len 35 --vocab 10000 --embedding-dim 650 \\
        --torch-python /tmp/torchvenv/bin/python --json

With `--json` the last line is one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lm_throughput  # noqa: E402  (sets the TensorFlow environment first)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _random(*shape) -> tf.Tensor:
    return tf.constant(np.random.default_rng(0).standard_normal(shape, dtype=np.float32) * 0.05)


def _compiled(function, xla: bool = False):
    """`function` as a `tf.function` run to completion, traced (and compiled) once, here."""
    compiled = tf.function(function, jit_compile=xla)

    def run():
        return compiled().numpy()

    run()
    return run


def product_runs(a_shape, b_shape, transpose_a=False, transpose_b=False) -> list:
    """One `tf.matmul` of these shapes (inputs as given, transposes in the kernel)."""
    a, b = _random(*a_shape), _random(*b_shape)
    product = lambda: tf.reduce_sum(  # noqa: E731
        tf.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    )
    return [_compiled(product)]


def chain_runs(batch: int, units: int, gates: int, steps: int, backward: bool) -> list:
    """`steps` dependent products of one recurrence direction, in each form tried.

    Forward: `h (B, U) x W (U, kU)`; backward: `d (B, kU) x W^T (kU, U)`. Each
    step's product needs the previous step's result, as in the layer. Only a
    slice, a tile or a sum stands in for the cell's element-wise work, which
    the floor leaves out. The forms: fused (one product a step) or per gate
    (k products side by side), each with and without XLA; the fastest counts.
    """
    fused = _random(units, gates * units)
    per_gate = [_random(units, units) for _ in range(gates)]
    start = _random(batch, units)

    def fused_loop():
        h = start
        for _ in range(steps):
            if backward:
                h = tf.matmul(tf.tile(h, [1, gates]), fused, transpose_b=True)
            else:
                h = tf.matmul(h, fused)[:, :units]
        return tf.reduce_sum(h)

    def per_gate_loop():
        h = start
        for _ in range(steps):
            h = tf.add_n([tf.matmul(h, w, transpose_b=backward) for w in per_gate])
        return tf.reduce_sum(h)

    return [_compiled(loop, xla) for loop in (fused_loop, per_gate_loop) for xla in (False, True)]


def floor_plan(args) -> dict[str, list[list]]:
    """The unavoidable products of one training step by part: for each product, its forms."""
    gates = 4 if args.cell == "lstm" else 3
    tokens, batch, units = args.batch_size * args.seq_len, args.batch_size, args.units
    plan: dict[str, list[list]] = {}
    features = args.embedding_dim
    for layer in range(args.layers):
        wide = gates * units
        plan[f"layer{layer}_big"] = [
            product_runs((tokens, features), (features, wide)),  # input projection
            product_runs((tokens, wide), (features, wide), transpose_b=True),  # d inputs
            product_runs((tokens, features), (tokens, wide), transpose_a=True),  # d W_x
            product_runs((tokens, units), (tokens, wide), transpose_a=True),  # d W_h
        ]
        plan[f"layer{layer}_chains"] = [
            chain_runs(batch, units, gates, args.seq_len, backward=False),
            chain_runs(batch, units, gates, args.seq_len, backward=True),
        ]
        features = units
    vocab = args.vocab
    plan["output"] = [
        product_runs((tokens, units), (units, vocab)),
        product_runs((tokens, vocab), (units, vocab), transpose_b=True),
        product_runs((tokens, units), (tokens, vocab), transpose_a=True),
    ]
    return plan


def floor_seconds(plan: dict[str, list[list]], repeats: int = 9) -> dict[str, float]:
    """One round of the plan, timed: per part, the sum over its products of their fastest form."""
    return {
        part: sum(min(_median_seconds(run, repeats) for run in forms) for forms in products)
        for part, products in plan.items()
    }


def textrnn_step_seconds(args, model, data) -> float:
    tokens = args.steps * args.batch_size * args.seq_len
    rate = lm_throughput.timed_fit(model, data, args.steps, tokens)
    return args.batch_size * args.seq_len / rate


def main(argv=None) -> dict:
    args = lm_throughput.parse_args(argv)
    if args.precision != "float32":
        raise SystemExit("matmul_floor.py times float32 products: run it without --precision")
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    data = lm_throughput.dataset(args)
    model = lm_throughput.textrnn_model(args)
    model.fit(data, epochs=1, steps_per_epoch=args.warmup, verbose=0)
    step_tokens = args.batch_size * args.seq_len
    plan = floor_plan(args)
    rounds: dict[str, list[float]] = {"floor": [], "textrnn": [], "torch": []}
    parts_by_round = []
    for index in range(args.rounds):
        parts_by_round.append(floor_seconds(plan))
        rounds["floor"].append(sum(parts_by_round[-1].values()))
        rounds["textrnn"].append(textrnn_step_seconds(args, model, data))
        if args.torch_python:
            rounds["torch"].append(step_tokens / lm_throughput.torch_round(args))
        timings = (f"{name} {1e3 * times[-1]:.1f} ms" for name, times in rounds.items() if times)
        log(f"round {index + 1}: " + ", ".join(timings))
    result = summary(args, rounds, parts_by_round)
    for key, value in result.items():
        log(f"{key}: {value}")
    if args.json:
        print(json.dumps(result))
    return result


def summary(args, rounds: dict[str, list[float]], parts_by_round: list[dict]) -> dict:
    """Medians in milliseconds; ratios as medians of per-round ratios (lower time is better)."""
    shape_keys = ("cell", "units", "layers", "batch_size", "seq_len", "vocab", "embedding_dim")
    result = {
        "shape": {key: getattr(args, key) for key in shape_keys},
        "floor_ms_per_step": round(1e3 * statistics.median(rounds["floor"]), 2),
        "floor_parts_ms": {
            name: round(1e3 * statistics.median(p[name] for p in parts_by_round), 2)
            for name in parts_by_round[0]
        },
        "textrnn_ms_per_step": round(1e3 * statistics.median(rounds["textrnn"]), 2),
        "textrnn_over_floor": round(
            lm_throughput.median_ratio(rounds["textrnn"], rounds["floor"]), 3
        ),
    }
    if rounds["torch"]:
        result["torch_ms_per_step"] = round(1e3 * statistics.median(rounds["torch"]), 2)
        result["ratio_vs_torch"] = round(
            lm_throughput.median_ratio(rounds["torch"], rounds["textrnn"]), 3
        )
        result["best_ratio_vs_torch"] = round(
            lm_throughput.median_ratio(rounds["torch"], rounds["floor"]), 3
        )
    return result


if __name__ == "__main__":
    main()
