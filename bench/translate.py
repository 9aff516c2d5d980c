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

Usage:
    .venv/bin/python bench/translate.py [--model RUN_DIR] [--sentences 256]
                                        [--batch1-sentences 32] [--train-steps 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tensorflow as tf  # noqa: E402

from textrnn import data as data_lib  # noqa: E402
from textrnn import translation  # noqa: E402


def decode_speed(
    translator: translation.Translator, sentences: list[str], beam: int, batch: int
) -> float:
    """Sentences per second over `sentences`, batched by `batch` (sorted by length, like
    evaluate)."""
    ordered = sorted(sentences, key=len)
    decoding = translator.config.decoding

    def run(texts: list[str]) -> None:
        translator.translate(
            tf.constant(texts),
            tf.constant(beam),
            tf.constant(0),
            tf.constant(decoding.length_penalty, tf.float32),
            tf.constant(decoding.max_length_ratio, tf.float32),
        )

    run(ordered[:batch])  # trace once
    started = time.perf_counter()
    for start in range(0, len(ordered), batch):
        run(ordered[start : start + batch])
    return len(ordered) / (time.perf_counter() - started)


def training_speed(config, tokenizers, steps: int) -> tuple[float, float]:
    """(target tokens/s, seconds per step) of the run's architecture on its own training data."""
    pairs = translation.read_pairs(
        config.data.source,
        config.data.target,
        config.data.train,
        config.data.source_column,
        config.data.target_column,
        config.data.encoding,
    )
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
    args = parser.parse_args()

    run = translation.load_run(args.model)
    config = run.config
    translator = translation.Translator.from_run(run)
    valid = args.valid_source or config.data.valid_source or config.data.source
    sentences = [line for line in data_lib.read_lines(valid, config.data.encoding) if line.strip()]
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


if __name__ == "__main__":
    main()
