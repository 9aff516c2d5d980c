"""Training on long texts (issue 19): the classifier reading whole texts against BPT3C.

Builds textrnn's sentiment classifier (`sentiment.build_model`, unidirectional LSTM,
mean pooling) three ways and trains each on the same random texts of `--length`
tokens, in alternating rounds (neighbours in time share the machine's load):

1. `whole`: the stack reads each text in one piece (the baseline);
2. `chunked, all`: `model.chunk_length = --chunk`, gradients through every chunk
   (the same numbers as `whole`, `tests/sentiment/test_chunked.py`);
3. `chunked, last K`: the same with `training.bptt_chunks = --bptt-chunks`: the
   chunks before a text's last K run forward only.

It prints training tokens/s of each (medians over rounds) and the ratios of the
per-round figures against `whole` measured in the same round.

    python bench/long_texts.py                              # 16 x 1,024 tokens, chunks of 64
    python bench/long_texts.py --length 2048 --bptt-chunks 4 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from textrnn import config as config_lib  # noqa: E402
from textrnn import sentiment  # noqa: E402
from textrnn.tokenizers import RESERVED_TOKENS  # noqa: E402


class _Vocabulary:
    """What `build_model` reads of a tokenizer."""

    def __init__(self, size: int):
        self.vocabulary_size = size
        self.vocabulary = list(RESERVED_TOKENS) + [f"w{i}" for i in range(size - 4)]


def build(args: argparse.Namespace, chunk: int, bptt_chunks: int):
    overrides = {
        "data.max_length": args.length,
        "model.embedding_dim": args.units,
        "model.pooling": "mean",
        "model.chunk_length": chunk,
        "model.stack.units": args.units,
        "training.bptt_chunks": bptt_chunks,
        "training.jit_compile": "false",
        "training.seed": 1,
    }
    config = config_lib.load_config(sentiment.Config, None, overrides)
    return sentiment.build_model(config, _Vocabulary(args.vocabulary), num_classes=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=1024, help="tokens per text")
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--bptt-chunks", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--vocabulary", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=8, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    # Lengths from half to all of --length: the padding a real batch of long texts has.
    lengths = rng.integers(args.length // 2, args.length + 1, size=args.batch_size)
    ids = rng.integers(4, args.vocabulary, size=(args.batch_size, args.length))
    ids[np.arange(args.length)[np.newaxis, :] >= lengths[:, np.newaxis]] = 0
    labels = rng.integers(0, 2, size=args.batch_size)
    tokens = int(lengths.sum()) * args.steps
    contenders = {
        "whole": build(args, 0, 0),
        "chunked, all": build(args, args.chunk, 0),
        f"chunked, last {args.bptt_chunks}": build(args, args.chunk, args.bptt_chunks),
    }
    batch = (tf.constant(ids, tf.int32), tf.constant(labels, tf.int32))
    for model in contenders.values():  # compile the step outside the timing
        model.train_on_batch(*batch)
    speeds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, model in contenders.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(*batch)
            speeds[name].append(tokens / (time.perf_counter() - start))
    results = {"load_average": os.getloadavg()[0]}
    for name, values in speeds.items():
        ratios = [value / whole for value, whole in zip(values, speeds["whole"], strict=True)]
        results[name] = {
            "tokens_per_second": statistics.median(values),
            "ratio": statistics.median(ratios),
        }
        print(
            f"{name}: {statistics.median(values):,.0f} tokens/s, "
            f"{statistics.median(ratios):.2f}x whole texts (rounds: "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + ")"
        )
    print(f"load average {results['load_average']:.1f} at the end")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
