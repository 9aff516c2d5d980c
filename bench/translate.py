"""Translation speed: decoding sentences/s (greedy, beam 5; batch 1, 64), training target tokens/s.

Measures, in one run, with a trained run directory (default: the Multi30k recipe's):

- sentences/s of the in-graph decoder (`translation.Translator.translate`, the
  function behind the exported signatures) on the validation sources, for
  greedy and beam 5 at batch 1 and batch 64; the first call of each setting
  (tracing) is excluded;
- training throughput in target tokens/s (real tokens, padding excluded) of the
  run's architecture on its training data, over `--train-steps` steps after a
  warm-up, with freshly initialized weights (the run is not modified).

Ratios printed: batch 64 over batch 1 and beam 5 over greedy.

With `--baseline-ref REF` it instead compares decoding speed (greedy and beam 5 at batch
64) of the code at git REF (e.g. main, before the repeat and coverage options existed) with
this tree's, options off and on (`--no-repeat-ngram`, `--coverage-penalty`; default: the
run's `[decoding]`, else 3 and 0.2), in one run: worker processes alternate old, new, old,
new (`--rounds`), each loading the model, tracing once and timing every setting, so both
see the same machine load. Printed: sentences/s of each and new / old ratios.

Usage:
    .venv/bin/python bench/translate.py [--model RUN_DIR] [--sentences 256]
                                        [--batch1-sentences 32] [--train-steps 30] [--json]
    nice .venv/bin/python bench/translate.py --model RUN_DIR --baseline-ref main [--rounds 2]
    nice .venv/bin/python bench/translate.py --model RUN_DIR --opennmt-python PY \
        [--rounds 3] [--train-steps 30] [--json]   (bench/translate_vs_opennmt.py)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
ROOT = Path(__file__).resolve().parent.parent
# A comparison worker runs another revision's code (--code): it comes first on the path.
CODE = sys.argv[sys.argv.index("--code") + 1] if "--code" in sys.argv else str(ROOT)
sys.path.insert(0, CODE)

import tensorflow as tf  # noqa: E402

from textrnn import data as data_lib  # noqa: E402
from textrnn import translation  # noqa: E402


def decode_speed(
    translator: translation.Translator,
    sentences: list[str],
    beam: int,
    batch: int,
    options: tuple[int, float] | None = None,
) -> float:
    """Sentences per second over `sentences`, batched by `batch` (sorted by length, like
    evaluate); `options` (no_repeat_ngram, coverage_penalty) are passed when given (code
    older than them takes five arguments)."""
    ordered = sorted(sentences, key=len)
    decoding = translator.config.decoding
    extra = (
        () if options is None else (tf.constant(options[0]), tf.constant(options[1], tf.float32))
    )

    def run(texts: list[str]) -> None:
        translator.translate(
            tf.constant(texts),
            tf.constant(beam),
            tf.constant(0),
            tf.constant(decoding.length_penalty, tf.float32),
            tf.constant(decoding.max_length_ratio, tf.float32),
            *extra,
        )

    run(ordered[:batch])  # trace once
    started = time.perf_counter()
    for start in range(0, len(ordered), batch):
        run(ordered[start : start + batch])
    return len(ordered) / (time.perf_counter() - started)


# ----------------------------------------------------------------------------- old vs new


def comparison_worker(args: argparse.Namespace) -> None:
    """One process of the old-vs-new comparison: print {setting: sentences/s} as JSON."""
    run = translation.load_run(args.model)
    translator = translation.Translator.from_run(run)
    sentences = validation_sentences(args, run.config)[: args.sentences]
    settings = {"off": None}
    if args.options:
        settings["on"] = (args.no_repeat_ngram, args.coverage_penalty)
    speeds = {}
    for beam, name in ((1, "greedy"), (5, "beam5")):
        for label, options in settings.items():  # alternating: the same load for both
            speeds[f"{name}_{label}"] = decode_speed(translator, sentences, beam, 64, options)
    print(json.dumps(speeds))


def compare_with_revision(args: argparse.Namespace) -> None:
    """Old (git `--baseline-ref`) vs this tree, in alternating worker processes."""
    config = translation.load_run(args.model).config
    ngram, beta = recipe_options(args, config)
    with tempfile.TemporaryDirectory() as old_code:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.baseline_ref, "textrnn"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(old_code, filter="data")
        common = [sys.executable, __file__, "--worker", "--model", args.model]
        common += ["--sentences", str(args.sentences)]
        if args.valid_source:
            common += ["--valid-source", args.valid_source]
        runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        for _ in range(args.rounds):
            for which, code, extra in (
                ("old", old_code, []),
                ("new", str(ROOT), ["--options", "--no-repeat-ngram", str(ngram)]),
            ):
                command = [*common, "--code", code, *extra]
                if which == "new":
                    command += ["--coverage-penalty", str(beta)]
                output = subprocess.run(command, capture_output=True, text=True)
                if output.returncode:
                    sys.exit(f"{which} worker failed: {output.stderr.strip().splitlines()[-1]}")
                runs[which].append(json.loads(output.stdout.strip().splitlines()[-1]))
    report_comparison(args, runs, ngram, beta)


def report_comparison(
    args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], ngram: int, beta: float
) -> None:
    """Mean sentences/s per setting and the new / old ratios."""

    def mean(which: str, key: str) -> float:
        return sum(r[key] for r in runs[which]) / len(runs[which])

    results: dict[str, float] = {}
    for name in ("greedy", "beam5"):
        old = mean("old", f"{name}_off")
        results[f"{name}_old"] = old
        results[f"{name}_new_off"] = mean("new", f"{name}_off")
        results[f"{name}_new_on"] = mean("new", f"{name}_on")
        results[f"{name}_new_off_over_old"] = results[f"{name}_new_off"] / old
        results[f"{name}_new_on_over_old"] = results[f"{name}_new_on"] / old
    results = {key: round(value, 3) for key, value in results.items()}
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "baseline_ref": args.baseline_ref,
                    "no_repeat_ngram": ngram,
                    "coverage_penalty": beta,
                    "rounds": args.rounds,
                    "cpu_count": os.cpu_count(),
                    **results,
                    "runs": runs,
                }
            )
        )
        return
    print(
        f"model {args.model}; {os.cpu_count()} CPU(s); batch 64, {args.sentences} sentences; "
        f"{args.rounds} round(s) of old ({args.baseline_ref}) / new; "
        f"options on: no_repeat_ngram {ngram}, coverage_penalty {beta:g}"
    )
    print(f"{'decoding':<10}{'old':>10}{'new, off':>12}{'new, on':>12}{'on / old':>10}")
    for name in ("greedy", "beam5"):
        print(
            f"{name:<10}{results[f'{name}_old']:>10.1f}{results[f'{name}_new_off']:>12.1f}"
            f"{results[f'{name}_new_on']:>12.1f}{results[f'{name}_new_on_over_old']:>9.2f}x"
        )


def recipe_options(args: argparse.Namespace, config) -> tuple[int, float]:
    """The options to bench: the flags', else the run's (when on), else 3 and 0.2."""
    decoding = config.decoding
    ngram = args.no_repeat_ngram
    if ngram is None:
        ngram = getattr(decoding, "no_repeat_ngram", 0) or 3
    beta = args.coverage_penalty
    if beta is None:
        beta = getattr(decoding, "coverage_penalty", 0.0) or 0.2
    return ngram, beta


def validation_sentences(args: argparse.Namespace, config) -> list[str]:
    valid = args.valid_source or config.data.valid_source or config.data.source
    return [line for line in data_lib.read_lines(valid, config.data.encoding) if line.strip()]


def training_speed(config, tokenizers, steps: int) -> tuple[float, float]:
    """(target tokens/s, seconds per step) of the run's architecture on its own training data."""
    pairs = translation.read_training_pairs(config)[0]  # as `train` reads them
    limit = min(len(pairs.sources), (steps + 5) * config.training.batch_size * 4)
    pairs = translation.Pairs(pairs.sources[:limit], pairs.targets[:limit])
    encoded = translation.encode_pairs(*tokenizers, pairs, config)
    longest = max(config.data.source_max_length, config.data.target_max_length)
    dataset = data_lib.batched_pairs(
        encoded.source_ids,
        encoded.target_ids,
        config.training.batch_size,
        longest,
        shuffle=True,
        seed=config.training.seed,
    ).repeat()
    model = translation.build_model(config, tokenizers, total_steps=steps + 5)
    batches = iter(dataset)
    for _ in range(5):  # warm-up: tracing and the first shapes
        inputs, targets = next(batches)
        model.train_on_batch(inputs, targets)
    tokens = 0
    started = time.perf_counter()
    for _ in range(steps):
        inputs, targets = next(batches)
        model.train_on_batch(inputs, targets)
        tokens += int(tf.math.count_nonzero(targets))
    seconds = time.perf_counter() - started
    return tokens / seconds, seconds / steps


def report(args: argparse.Namespace, config, valid: str, results: dict[str, float]) -> None:
    """Print the speeds and their ratios (one JSON object with --json)."""
    ratios = {
        "greedy_batch64_over_batch1": results["greedy_batch64_sentences_per_s"]
        / results["greedy_batch1_sentences_per_s"],
        "beam5_batch64_over_batch1": results["beam5_batch64_sentences_per_s"]
        / results["beam5_batch1_sentences_per_s"],
        "beam5_over_greedy_batch64": results["beam5_batch64_sentences_per_s"]
        / results["greedy_batch64_sentences_per_s"],
    }
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "cpu_count": os.cpu_count(),
                    **results,
                    **{k: round(v, 3) for k, v in ratios.items()},
                }
            )
        )
        return
    print(f"model {args.model}; {os.cpu_count()} CPU(s); decoding {valid}")
    print(f"{'decoding':<10}{'batch 1':>14}{'batch 64':>14}{'64 / 1':>10}")
    for name in ("greedy", "beam5"):
        one, many = (
            results[f"{name}_batch1_sentences_per_s"],
            results[f"{name}_batch64_sentences_per_s"],
        )
        print(f"{name:<10}{one:>11.1f} s/s{many:>11.1f} s/s{many / one:>9.1f}x")
    print(f"beam 5 / greedy at batch 64: {ratios['beam5_over_greedy_batch64']:.2f}x")
    print(
        f"training: {results['train_target_tokens_per_s']:.0f} target tokens/s "
        f"({results['train_seconds_per_step'] * 1000:.0f} ms per step of "
        f"{config.training.batch_size} pairs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="runs/translation/multi30k", help="a trained translation run directory"
    )
    parser.add_argument(
        "--valid-source",
        default="",
        help="sentences to decode (default: the run's validation sources)",
    )
    parser.add_argument("--sentences", type=int, default=256, help="sentences decoded at batch 64")
    parser.add_argument(
        "--batch1-sentences", type=int, default=32, help="sentences decoded at batch 1"
    )
    parser.add_argument("--train-steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--baseline-ref", default="", help="compare decoding with the code at this git ref"
    )
    parser.add_argument("--rounds", type=int, default=2, help="old / new worker pairs")
    parser.add_argument("--no-repeat-ngram", type=int, default=None)
    parser.add_argument("--coverage-penalty", type=float, default=None)
    parser.add_argument(
        "--opennmt-python",
        default="",
        help="compare with OpenNMT-tf run by this python (bench/translate_vs_opennmt.py)",
    )
    parser.add_argument("--decode-sentences", type=int, default=1000)
    parser.add_argument("--decode-length", type=int, default=80)
    parser.add_argument("--data-dir", default="", help="token files for OpenNMT-tf (a temp dir)")
    parser.add_argument("--skip-decode", action="store_true", help="training speed only")
    parser.add_argument("--opennmt-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--train-pairs", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--options", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", default=str(ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        comparison_worker(args)
        return
    if args.opennmt_worker or args.opennmt_python:
        sys.path.insert(0, str(ROOT / "bench"))
        import translate_vs_opennmt

        if args.opennmt_worker:
            translate_vs_opennmt.textrnn_worker(args)
            return
        with tempfile.TemporaryDirectory() as scratch:
            args.data_dir = args.data_dir or scratch
            translate_vs_opennmt.compare(args)
        return
    if args.baseline_ref:
        compare_with_revision(args)
        return

    run = translation.load_run(args.model)
    config = run.config
    translator = translation.Translator.from_run(run)
    valid = args.valid_source or config.data.valid_source or config.data.source
    sentences = validation_sentences(args, config)
    results: dict[str, float] = {}
    for beam, name in ((1, "greedy"), (5, "beam5")):
        results[f"{name}_batch1_sentences_per_s"] = decode_speed(
            translator, sentences[: args.batch1_sentences], beam, 1
        )
        results[f"{name}_batch64_sentences_per_s"] = decode_speed(
            translator, sentences[: args.sentences], beam, 64
        )
    tokens_per_s, step_seconds = training_speed(
        config, (run.source_tokenizer, run.target_tokenizer), args.train_steps
    )
    results["train_target_tokens_per_s"] = tokens_per_s
    results["train_seconds_per_step"] = step_seconds
    results = {key: round(value, 3) for key, value in results.items()}
    report(args, config, valid, results)


if __name__ == "__main__":
    main()
