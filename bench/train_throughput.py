"""Training throughput: the sentiment model (issue 2), or with `--seq-len` the language model
(issue 7).

With `--seq-len N` this runs `bench/lm_throughput.py` (language model on synthetic
tokens against plain Keras and, with `--torch-python`, PyTorch; see there):

    python bench/train_throughput.py --cell lstm --units 256 --layers 2 --batch-size 64 \\
        --seq-len 100 --json

Without it, for the sentiment model, it prints in one run:

1. training tokens/s of the sentiment model built by textrnn (`sentiment.build_model`)
   fed by textrnn's input pipeline (`sentiment.load_datasets`: in-graph tokenizer,
   cached ids, length buckets), and of a plain hand-written Keras model of the same
   shape (Embedding -> LSTM/GRU layers -> pooling -> Dense) fed by a plain
   hand-written pipeline (shuffle, `ragged_batch`, pad to the batch's longest row,
   prefetch) over the same token ids; and their ratio (textrnn must not be slower);
2. the input pipeline's throughput alone (iterating textrnn's training dataset,
   no model) against what training consumes: the pipeline must be >= 5x faster;
3. `textrnn sentiment predict` on 10,000 lines on stdin: lines/s (end to end, in a
   fresh process, including start-up and model loading; and the same lines through
   `sentiment.predict` on the export loaded in this process).

The machine is shared and noisy, so the contenders alternate for `--rounds`
rounds in one process (one epoch each per round, after an untimed warm-up
epoch); throughputs are medians over rounds and ratios are medians of the per-round
ratios (neighbours in time share the machine's load). Tokens are real (non-padding)
tokens; both contenders see the same examples, so the same tokens per epoch.

    python bench/train_throughput.py                       # the bundled recipe's model and data
    python bench/train_throughput.py --cell gru --units 128 --layers 2 --json

Model shape options (`--cell`, `--units`, `--layers`, `--bidirectional`,
`--embedding-dim`, `--pooling`) override the recipe and apply to both
contenders; `add_model_arguments` / `shape_overrides` are where more go.
With `--json` the last line is one JSON object.

With `--baseline-tree DIR` it compares two versions of textrnn instead (issue 19:
"with the options off, no change"): DIR is another checkout, e.g.
`git worktree add /tmp/base <old commit>`. One worker process per tree (each
importing its own `textrnn`) builds the language model of `--lm-recipe` (the
word recipe by default; `--set KEY=VALUE` changes it in both) and trains it on
the same synthetic tokens; the workers take turns, one epoch each per round
(in A B, B A, A B, ... order), and the ratio is the median of the per-round
ratios (this tree / DIR):

    git worktree add /tmp/textrnn-base HEAD~3
    python bench/train_throughput.py --baseline-tree /tmp/textrnn-base --rounds 5 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

ROOT = Path(__file__).resolve().parents[1]
# A tree-comparison worker imports the textrnn of the tree it measures (see the docstring).
CODE_ROOT = Path(os.environ.get("TEXTRNN_BENCH_CODE_ROOT", ROOT))
sys.path.insert(0, str(CODE_ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from textrnn import config as config_lib  # noqa: E402
from textrnn import export, language_model, sentiment  # noqa: E402
from textrnn.sentiment.data import Labels, labels_to_ids, read_examples  # noqa: E402
from textrnn.tokenizers import encode_texts  # noqa: E402
from textrnn.training.optimizer import make_optimizer  # noqa: E402
from textrnn.training.run_dir import WEIGHTS_FILE, save_config  # noqa: E402
from textrnn.training.strategy import set_seed  # noqa: E402

PIPELINE_MINIMUM_RATIO = 5.0


# ----------------------------------------------------------------------------- options


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model shape options; each applies to textrnn's model and the plain Keras one."""
    parser.add_argument(
        "--cell", choices=("lstm", "gru", "rnn"), help="recurrent cell (default: recipe)"
    )
    parser.add_argument("--units", type=int, help="units per layer and direction")
    parser.add_argument("--layers", type=int, help="stacked recurrent layers")
    parser.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--embedding-dim", type=int)
    parser.add_argument("--pooling", choices=("final", "max", "mean"))


def shape_overrides(args: argparse.Namespace) -> dict:
    return {
        "model.stack.cell": args.cell,
        "model.stack.units": args.units,
        "model.stack.num_layers": args.layers,
        "model.stack.bidirectional": args.bidirectional,
        "model.embedding_dim": args.embedding_dim,
        "model.pooling": args.pooling,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default=str(ROOT / "tasks/sentiment/config.toml"), help="sentiment recipe"
    )
    parser.add_argument("--train", help="training data (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--max-length", type=int, help="default: the recipe's")
    add_model_arguments(parser)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; medians are quoted"
    )
    parser.add_argument("--predict-lines", type=int, default=10_000)
    parser.add_argument("--predict-rounds", type=int, default=3)
    parser.add_argument("--skip-predict", action="store_true")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per predict subprocess")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> sentiment.Config:
    overrides = {
        "data.train": args.train,
        "data.valid": "" if args.train else None,
        "data.max_length": args.max_length,
        "training.batch_size": args.batch_size,
        "training.strategy": "cpu",
        **shape_overrides(args),
    }
    return config_lib.load_config(sentiment.Config, args.config, overrides)


# ----------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    name: str
    model: keras.Model
    dataset: tf.data.Dataset
    tokens_per_epoch: int


def plain_keras_model(
    config: sentiment.Config, vocabulary_size: int, num_classes: int
) -> keras.Model:
    """The sentiment model's shape written with stock Keras layers only."""
    model_config, stack = config.model, config.model.stack
    layer_class = {
        "lstm": keras.layers.LSTM,
        "gru": keras.layers.GRU,
        "rnn": keras.layers.SimpleRNN,
    }[stack.cell]
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(vocabulary_size, model_config.embedding_dim, mask_zero=True)(inputs)
    if model_config.embedding_dropout:
        x = keras.layers.SpatialDropout1D(model_config.embedding_dropout)(x)
    for index in range(stack.num_layers):
        last = index == stack.num_layers - 1
        layer = layer_class(
            stack.units, return_sequences=model_config.pooling != "final" or not last
        )
        if stack.bidirectional:
            layer = keras.layers.Bidirectional(layer)
        x = layer(x)
        if not last and stack.dropout:
            x = keras.layers.Dropout(stack.dropout)(x)
    if model_config.pooling == "max":
        x = keras.layers.GlobalMaxPooling1D()(x)
    elif model_config.pooling == "mean":
        x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dropout(model_config.dropout)(x)
    outputs = keras.layers.Dense(num_classes)(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=make_optimizer(config.training),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def plain_pipeline(
    ids: tf.RaggedTensor, labels: np.ndarray, batch_size: int, seed: int
) -> tf.data.Dataset:
    """What one writes by hand: shuffle, batch ragged rows, pad each batch, prefetch."""
    dataset = tf.data.Dataset.from_tensor_slices((tf.cast(ids, tf.int32), labels))
    dataset = dataset.shuffle(len(labels), seed=seed).ragged_batch(batch_size)
    return dataset.map(lambda x, y: (x.to_tensor(), y)).prefetch(tf.data.AUTOTUNE)


def build_contenders(config: sentiment.Config, run_dir: Path) -> tuple[list[Contender], dict]:
    set_seed(config.training.seed)
    data = sentiment.load_datasets(config, run_dir)
    save_config(run_dir, config)
    num_classes = data.model_arguments["num_classes"]
    model = sentiment.build_model(
        config, data.tokenizer, num_classes=num_classes, total_steps=data.steps_per_epoch
    )

    # The same examples, tokenized by the same tokenizer, for the plain contender.
    examples = read_examples(
        config.data.train, config.data.text_column, config.data.label_column, config.data.encoding
    )
    labels = Labels.load(run_dir)
    keep, label_ids, _ = labels_to_ids(examples, labels)
    ids = encode_texts(data.tokenizer, [examples.texts[i] for i in keep], config.data.max_length)
    textrnn_tokens = sum(
        int(tf.math.count_nonzero(x)) for x, _ in data.train
    )  # also fills the cache
    if (
        not config.data.valid
    ):  # textrnn held out a validation split: give the plain one as many rows
        count = sum(int(tf.shape(x)[0]) for x, _ in data.train)
        ids, label_ids = ids[:count], label_ids[:count]
    plain_ids, plain_labels = ids, label_ids
    plain_tokens = int(plain_ids.row_lengths().numpy().sum())
    plain = Contender(
        "keras",
        plain_keras_model(config, data.tokenizer.vocabulary_size, num_classes),
        plain_pipeline(plain_ids, plain_labels, config.training.batch_size, config.training.seed),
        plain_tokens,
    )
    info = {
        "examples": int(len(plain_labels)),
        "vocabulary_size": data.tokenizer.vocabulary_size,
        "batch_size": config.training.batch_size,
        "parameters": model.count_params(),
        "keras_parameters": plain.model.count_params(),
    }
    return [Contender("textrnn", model, data.train, textrnn_tokens), plain], info


def time_epoch(contender: Contender) -> float:
    started = time.perf_counter()
    contender.model.fit(contender.dataset, epochs=1, verbose=0, shuffle=False)
    return contender.tokens_per_epoch / (time.perf_counter() - started)


def time_pipeline(dataset: tf.data.Dataset, tokens: int) -> float:
    started = time.perf_counter()
    for _ in dataset:
        pass
    return tokens / (time.perf_counter() - started)


def alternate(
    measures: dict[str, Callable[[], float]], rounds: int, log: Callable[[str], None]
) -> dict[str, list[float]]:
    """Run every measure once per round, in turn, `rounds` times."""
    results: dict[str, list[float]] = {name: [] for name in measures}
    for round_index in range(rounds):
        for name, measure in measures.items():
            results[name].append(measure())
            log(f"  round {round_index + 1}/{rounds} {name}: {results[name][-1]:,.0f}")
    return results


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


# ----------------------------------------------------------------------------- predict


def predict_throughput(
    run_dir: Path,
    texts: list[str],
    lines: int,
    rounds: int,
    timeout: float,
    log: Callable[[str], None],
) -> dict:
    """`textrnn sentiment predict --model EXPORT` on `lines` stdin lines (training texts, cycled).

    Alternates the CLI in a fresh process (end to end: start-up, model loading,
    reading stdin, printing) with the same lines through `sentiment.predict` on
    the export loaded once in this process (the model's share).
    """
    texts = [" ".join(text.split()) for text in texts if text.strip()]
    chosen = [texts[i % len(texts)] for i in range(lines)]
    stdin = "".join(text + "\n" for text in chosen).encode()
    with tempfile.TemporaryDirectory(prefix="textrnn-bench-export-") as out:
        version = export.export_run(run_dir, out)
        serve = tf.saved_model.load(str(version)).signatures["serving_default"]
        sentiment.predict(serve, chosen[:256])  # warm up

        def cli() -> float:
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
            command = [
                sys.executable,
                "-m",
                "textrnn.cli",
                "sentiment",
                "predict",
                "--model",
                str(version),
            ]
            started = time.perf_counter()
            result = subprocess.run(
                command, input=stdin, capture_output=True, timeout=timeout, env=env, cwd=ROOT
            )
            seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise RuntimeError(f"predict failed: {result.stderr.decode()[-500:]}")
            if len(result.stdout.splitlines()) != lines:
                raise RuntimeError("predict printed the wrong number of lines")
            return lines / seconds

        def in_process() -> float:
            started = time.perf_counter()
            sentiment.predict(serve, chosen)
            return lines / (time.perf_counter() - started)

        runs = alternate({"predict_cli": cli, "predict_in_process": in_process}, rounds, log)
    return {
        "predict_lines": lines,
        "predict_lines_per_s": statistics.median(runs["predict_cli"]),
        "predict_in_process_lines_per_s": statistics.median(runs["predict_in_process"]),
    }


# ----------------------------------------------------------------------------- two trees


def parse_tree_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="textrnn against another checkout of itself")
    parser.add_argument("--baseline-tree", help="the other checkout (its textrnn is the baseline)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lm-recipe", default=str(ROOT / "tasks/lm/shakespeare_word.toml"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override"
    )
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per worker reply")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    return parser.parse_args(argv)


def tree_worker(args: argparse.Namespace) -> None:
    """Build the recipe's language model with this process's textrnn; time an epoch per line."""
    overrides = dict(item.split("=", 1) for item in args.set)
    overrides["training.strategy"] = "cpu"
    config = config_lib.load_config(language_model.Config, args.lm_recipe, overrides)
    batch, length = config.training.batch_size, config.data.seq_len
    vocabulary = config.tokenizer.vocabulary_size
    set_seed(config.training.seed)
    model = language_model.build_model(
        config, SimpleNamespace(vocabulary_size=vocabulary), total_steps=10_000
    )
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocabulary, size=(batch * args.steps, length + 1)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((tokens[:, :-1], tokens[:, 1:]))
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    data = data.batch(batch, drop_remainder=True).cache().repeat().with_options(options)
    model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0, shuffle=False)  # compile
    import textrnn

    print(f"ready {textrnn.__file__}", flush=True)
    for _ in sys.stdin:
        started = time.perf_counter()
        model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0, shuffle=False)
        print(batch * length * args.steps / (time.perf_counter() - started), flush=True)


class TreeWorker:
    """A worker process measuring the textrnn of `tree` (`tree_worker`), driven over pipes."""

    def __init__(self, tree: Path, args: argparse.Namespace, log: Callable[[str], None]):
        command = [sys.executable, __file__, "--worker", "--steps", str(args.steps)]
        command += ["--lm-recipe", args.lm_recipe, *(f"--set={item}" for item in args.set)]
        env = dict(os.environ, TEXTRNN_BENCH_CODE_ROOT=str(tree), PYTHONPATH=str(tree))
        self.timeout = args.timeout
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        ready = self._reply()
        log(f"  worker for {tree}: {ready}")

    def _reply(self) -> str:
        import select

        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise RuntimeError("a tree worker failed or timed out (see its stderr above)")
        return line.strip()

    def epoch(self) -> float:
        self.process.stdin.write("epoch\n")
        self.process.stdin.flush()
        return float(self._reply())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def compare_trees(args: argparse.Namespace) -> dict:
    """Training tokens/s of this tree against `--baseline-tree`, alternating; the ratio."""
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    baseline_tree = Path(args.baseline_tree).resolve()
    if not (baseline_tree / "textrnn").is_dir():
        raise SystemExit(f"--baseline-tree {baseline_tree}: no textrnn package there")
    log(f"recipe {args.lm_recipe} {' '.join(args.set)}; {args.steps} steps an epoch")
    workers = {}
    try:
        for name, tree in (("baseline", baseline_tree), ("this", ROOT)):
            workers[name] = TreeWorker(tree, args, log)  # one at a time: no overlap
        rounds: dict[str, list[float]] = {name: [] for name in workers}
        for round_index in range(args.rounds):
            # ABBA: the order flips every round, so neither tree always runs first.
            order = list(workers) if round_index % 2 == 0 else list(reversed(workers))
            for name in order:
                rounds[name].append(workers[name].epoch())
                log(f"  round {round_index + 1}/{args.rounds} {name}: {rounds[name][-1]:,.0f}")
    finally:
        for worker in workers.values():
            worker.close()
    result = {
        "this_tokens_per_s": round(statistics.median(rounds["this"])),
        "baseline_tokens_per_s": round(statistics.median(rounds["baseline"])),
        "ratio": round(median_ratio(rounds["this"], rounds["baseline"]), 3),
        "per_round": {name: [round(v) for v in values] for name, values in rounds.items()},
        "baseline_tree": str(baseline_tree),
        "recipe": args.lm_recipe,
        "overrides": args.set,
        "load_average": os.getloadavg(),
    }
    log(
        f"training: this tree {result['this_tokens_per_s']:,} tokens/s, baseline "
        f"{result['baseline_tokens_per_s']:,} (medians); ratio {result['ratio']:.3f} "
        f"(median per round, this / baseline); load average {result['load_average']}"
    )
    if args.json:
        print(json.dumps(result))
    return result


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    config = resolve_config(args)
    stack = config.model.stack
    log(
        f"model: {'bi' if stack.bidirectional else ''}{stack.cell} "
        f"{stack.num_layers}x{stack.units}, embedding {config.model.embedding_dim}, "
        f"pooling {config.model.pooling}; data {config.data.train}"
    )
    with tempfile.TemporaryDirectory(prefix="textrnn-bench-run-") as tmp:
        run_dir = Path(tmp)
        contenders, info = build_contenders(config, run_dir)
        log(
            f"{info['examples']} examples, vocabulary {info['vocabulary_size']}, "
            f"batch {info['batch_size']}, parameters textrnn {info['parameters']:,} / "
            f"keras {info['keras_parameters']:,}"
        )
        textrnn_contender = contenders[0]

        log("warm-up (one untimed epoch each: tracing, compilation, pipeline cache)")
        for contender in contenders:
            time_epoch(contender)
        log("training tokens/s, alternating:")
        measures = {c.name: (lambda c=c: time_epoch(c)) for c in contenders}
        measures["pipeline"] = lambda: time_pipeline(
            textrnn_contender.dataset, textrnn_contender.tokens_per_epoch
        )
        rounds = alternate(measures, args.rounds, log)
        medians = {name: statistics.median(values) for name, values in rounds.items()}
        # Ratios: the median of per-round ratios (neighbours in time share the machine's load),
        # which is steadier on a shared machine than a ratio of medians.
        ratio = median_ratio(rounds["textrnn"], rounds["keras"])
        pipeline_ratio = median_ratio(rounds["pipeline"], rounds["textrnn"])
        result = {
            "textrnn_tokens_per_s": medians["textrnn"],
            "keras_tokens_per_s": medians["keras"],
            "ratio": ratio,
            "pipeline_tokens_per_s": medians["pipeline"],
            "pipeline_ratio": pipeline_ratio,
            "pipeline_ok": pipeline_ratio >= PIPELINE_MINIMUM_RATIO,
            "per_round": {name: [round(v) for v in values] for name, values in rounds.items()},
            "rounds": args.rounds,
            "examples": info["examples"],
            "tokens_per_epoch": textrnn_contender.tokens_per_epoch,
            "config": {
                "cell": stack.cell,
                "units": stack.units,
                "layers": stack.num_layers,
                "bidirectional": stack.bidirectional,
                "embedding_dim": config.model.embedding_dim,
                "pooling": config.model.pooling,
                "batch_size": config.training.batch_size,
            },
        }
        log(
            f"training: textrnn {result['textrnn_tokens_per_s']:,.0f} tokens/s, plain Keras "
            f"{result['keras_tokens_per_s']:,.0f} tokens/s (medians); ratio "
            f"{result['ratio']:.2f} (median per round, textrnn / Keras; >= 1 wanted)"
        )
        log(
            f"input pipeline alone: {result['pipeline_tokens_per_s']:,.0f} tokens/s = "
            f"{result['pipeline_ratio']:.1f}x what training consumes "
            f"(median per round; >= {PIPELINE_MINIMUM_RATIO:.0f}x wanted)"
        )

        if not args.skip_predict:
            weights = run_dir / WEIGHTS_FILE
            textrnn_contender.model.save_weights(weights)
            texts = read_examples(
                config.data.train,
                config.data.text_column,
                config.data.label_column,
                config.data.encoding,
            ).texts
            log(
                f"predict: {args.predict_lines:,} lines on stdin "
                "(CLI, fresh process) vs in-process:"
            )
            result.update(
                predict_throughput(
                    run_dir, texts, args.predict_lines, args.predict_rounds, args.timeout, log
                )
            )
            log(
                f"predict: {result['predict_lines_per_s']:,.0f} lines/s end to end "
                f"(`textrnn sentiment predict`, start-up included); "
                f"{result['predict_in_process_lines_per_s']:,.0f} lines/s in process"
            )
    result = {
        k: (round(v, 3) if isinstance(v, float) and math.isfinite(v) else v)
        for k, v in result.items()
    }
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    if any(
        arg in ("--worker", "--baseline-tree") or arg.startswith("--baseline-tree=")
        for arg in sys.argv[1:]
    ):
        tree_args = parse_tree_args()
        if tree_args.worker:
            tree_worker(tree_args)
        else:
            compare_trees(tree_args)
    elif any(arg == "--seq-len" or arg.startswith("--seq-len=") for arg in sys.argv[1:]):
        sys.path.insert(0, str(ROOT / "bench"))
        import lm_throughput

        lm_throughput.main()
    else:
        main()
