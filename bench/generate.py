"""Generation speed of a 2 x 256 LSTM character model: in-graph loop vs the naive approach.

Measures, in one run:

- tokens/s of `LanguageModel.generate_ids` (the exported `generate` signature:
  prompt consumed once, then a `tf.while_loop` of one `RNNStack.step` per
  token, compiled with XLA) at batch 1 and batch 64, for 200 and 1,000 new
  tokens, and the time to the first token;
- the same for the naive approach of the keras-io / textgenrnn examples: run
  the whole model over the growing sequence for every new token (here a
  compiled `tf.function` call per token, already faster than `model.predict`).
  At 1,000 tokens the naive total is estimated from measured per-token times
  at several lengths (it grows linearly with the length; the fit is printed);
- the step signature driven from Python (what `textrnn generate --stream` does);
- peak memory growth when generating 1,000 and then 10,000 tokens.

Weights are random unless `--model RUN_DIR` names a trained character run;
speed does not depend on them (the continuous layout never stops early).

Usage:
    .venv/bin/python bench/generate.py [--model RUN_DIR] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from textrnn import language_model as lm_lib  # noqa: E402
from textrnn.config import load_config  # noqa: E402
from textrnn.decoding import sampling  # noqa: E402
from textrnn.tokenizers import BOS_ID, build_tokenizer  # noqa: E402

PROMPT = "ROMEO:\n"


def make_model(run_dir: str | None) -> lm_lib.LanguageModel:
    if run_dir:
        return lm_lib.LanguageModel.from_run(lm_lib.load_run(run_dir))
    config = load_config(
        lm_lib.Config,
        None,
        {
            "model.embedding_dim": 64,
            "model.stack.units": 256,
            "model.stack.num_layers": 2,
            "model.stack.cell": "lstm",
        },
    )
    text = (ROOT / "tasks/lm/data/train.txt").read_text(encoding="utf-8")
    tokenizer = build_tokenizer(
        config.tokenizer, text.splitlines(keepends=True), tempfile.mkdtemp()
    )
    model = lm_lib.build_model(config, tokenizer, compile=False)
    return lm_lib.LanguageModel.from_run(lm_lib.LanguageModelRun(config, tokenizer, model))


def in_graph(lm: lm_lib.LanguageModel, batch: int, tokens: int, rounds: int) -> dict:
    function = tf.function(lm.generate_ids)
    prompts = tf.constant([PROMPT] * batch)

    def call(n: int) -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        ids = function(
            prompts,
            tf.constant(n),
            tf.constant(1.0),
            tf.constant(0),
            tf.constant(1.0),
            tf.constant(1, tf.int64),
        )
        ids.numpy()
        return time.perf_counter() - started, time.process_time() - cpu

    call(tokens), call(1)  # compile (one XLA program per batch size and power-of-two capacity)
    timings = [call(tokens) for _ in range(rounds)]
    seconds = statistics.median(t[0] for t in timings)
    cpu_seconds = statistics.median(t[1] for t in timings)
    first = statistics.median(call(1)[0] for _ in range(rounds))
    return {
        "tokens_per_second": batch * tokens / seconds,
        # CPU time of this process: on a machine shared with other jobs, wall time
        # includes waiting for a core; tokens per CPU-second does not.
        "tokens_per_cpu_second": batch * tokens / max(cpu_seconds, 1e-9),
        "seconds": seconds,
        "first_token_seconds": first,
    }


def naive(lm: lm_lib.LanguageModel, batch: int, tokens: int, lengths: tuple[int, ...]) -> dict:
    """Re-run the whole model on the growing sequence for every token."""

    @tf.function(reduce_retracing=True)
    def next_token(ids: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        logits = lm.model(ids, training=False)[
            :, -1
        ]  # (batch, vocabulary): the whole sequence again
        return sampling.sample_logits(
            logits, 1.0, 0, 1.0, sampling.step_seed(1, t), banned=lm.banned
        )

    prompt = lm.prompt_ids(tf.constant([PROMPT] * batch))
    per_token = {}
    for length in lengths:
        ids = tf.concat(
            [prompt, tf.fill([batch, max(0, length - prompt.shape[1])], BOS_ID + 10)], axis=1
        )
        next_token(ids, tf.constant(0)).numpy()  # trace for this length
        samples = []
        for t in range(3):
            started = time.perf_counter()
            next_token(ids, tf.constant(t)).numpy()
            samples.append(time.perf_counter() - started)
        per_token[length] = statistics.median(samples)
    xs = np.array(list(per_token), float)
    ys = np.array(list(per_token.values()))
    slope, intercept = np.polyfit(xs, ys, 1)
    start = prompt.shape[1]
    total = float(sum(intercept + slope * (start + i) for i in range(tokens)))
    return {
        "tokens_per_second": batch * tokens / total,
        "seconds": total,
        "first_token_seconds": per_token[min(per_token)],  # measured at the prompt's length
        "per_token_seconds_by_length": {int(k): v for k, v in per_token.items()},
        "fit": {"intercept_seconds": float(intercept), "seconds_per_position": float(slope)},
    }


def naive_measured(lm: lm_lib.LanguageModel, tokens: int) -> float:
    """Batch 1, `tokens` new tokens, actually run end to end (no estimate): tokens/s."""

    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.int32), tf.TensorSpec([], tf.int32)])
    def next_token(ids, t):
        logits = lm.model(ids, training=False)[:, -1]
        return sampling.sample_logits(
            logits, 1.0, 0, 1.0, sampling.step_seed(1, t), banned=lm.banned
        )

    ids = lm.prompt_ids(tf.constant([PROMPT]))
    next_token(ids, tf.constant(0))
    started = time.perf_counter()
    for t in range(tokens):
        token = next_token(ids, tf.constant(t))
        ids = tf.concat([ids, token[:, tf.newaxis]], axis=1)
    return tokens / (time.perf_counter() - started)


def stepped(lm: lm_lib.LanguageModel, tokens: int) -> float:
    """The `step` signature called once per token from Python (streaming): tokens/s at batch 1."""
    step = lm_lib.signature_functions(lm)["step"]
    states = tf.zeros([1, lm.num_states, lm.stack.units])
    token = tf.constant([BOS_ID], tf.int32)
    out = step(token_ids=token, states=states)
    started = time.perf_counter()
    for t in range(tokens):
        token = sampling.sample_logits(
            out["logits"], 1.0, 0, 1.0, sampling.step_seed(1, t), banned=lm.banned
        )
        out = step(token_ids=token, states=out["states"])
    return tokens / (time.perf_counter() - started)


def memory(lm: lm_lib.LanguageModel) -> dict:
    function = tf.function(lm.generate_ids)
    prompts = tf.constant([PROMPT])
    knobs = (tf.constant(1.0), tf.constant(0), tf.constant(1.0), tf.constant(1, tf.int64))
    out = {}
    for n in (1000, 10000):
        function(prompts, tf.constant(n), *knobs).numpy()  # compile outside the measurement
    for n in (1000, 10000):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(3):
            function(prompts, tf.constant(n), *knobs).numpy()
        out[f"peak_rss_growth_kb_{n}_tokens"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="a trained character run directory (default: random 2 x 256 LSTM)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    lm = make_model(args.model)
    stack = lm.stack
    results: dict = {
        "model": f"{stack.num_layers} x {stack.units} {stack.cell}, vocabulary {lm.vocabulary_size}"
    }
    for batch in (1, 64):
        for tokens in (200, 1000):
            fast = in_graph(lm, batch, tokens, args.rounds)
            slow = naive(lm, batch, tokens, lengths=(8, 250, 500, 1000))
            results[f"batch{batch}_tokens{tokens}"] = {
                "in_graph": fast,
                "naive": slow,
                "speedup": fast["tokens_per_second"] / slow["tokens_per_second"],
            }
            if not args.json:
                print(
                    f"batch {batch:>2}, {tokens:>4} tokens: in-graph "
                    f"{fast['tokens_per_second']:>9,.0f} tok/s "
                    f"({fast['tokens_per_cpu_second']:,.0f} per CPU-s; first token "
                    f"{fast['first_token_seconds'] * 1e3:.1f} ms) | naive "
                    f"{slow['tokens_per_second']:>7,.1f} tok/s (first token "
                    f"{slow['first_token_seconds'] * 1e3:.1f} ms) "
                    f"| {fast['tokens_per_second'] / slow['tokens_per_second']:,.0f}x",
                    flush=True,
                )
    results["naive_measured_batch1_tokens200_tokens_per_second"] = naive_measured(lm, 200)
    results["step_signature_batch1_tokens_per_second"] = stepped(lm, 200)
    results.update(memory(lm))
    results["load_average"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(results))
        return
    print(f"load average after the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    naive_rate = results["naive_measured_batch1_tokens200_tokens_per_second"]
    print(f"naive, batch 1, 200 tokens, run end to end: {naive_rate:,.1f} tok/s")
    step_rate = results["step_signature_batch1_tokens_per_second"]
    print(f"step signature from Python (streaming), batch 1: {step_rate:,.0f} tok/s")
    print(
        f"peak RSS growth: {results['peak_rss_growth_kb_1000_tokens']} kB for 1,000 tokens, then "
        f"{results['peak_rss_growth_kb_10000_tokens']} kB for 10,000"
    )


if __name__ == "__main__":
    main()
