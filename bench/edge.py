"""LiteRT exports (float32 / dynamic / float16) against the SavedModel, in one run.

For each task given a run directory, exports the SavedModel and the LiteRT files, then
measures, on this machine, batch 1:

- file size (SavedModel directory vs model.tflite) and load time (`tf.saved_model.load`
  vs `EdgeExport.open`);
- sentiment: latency per text (tokenize + classify; p50 / p99) and SST-2 dev accuracy;
- language model: latency per `step` call (p50 / p99), generation tokens/s (200 tokens,
  greedy, best of 3 runs) against the SavedModel's `step` signature driven from Python
  and its in-graph `generate`, and validation nats/char through the LiteRT `step` (32 streams);
- translation: sentences/s (beam from the recipe) and val BLEU (sacreBLEU).

Ratios are printed against the SavedModel measured in the same run. Other processes
share the CPU: run it under `nice` and read the ratios rather than the absolute figures.

Usage:
    python bench/edge.py --sentiment RUN --lm RUN --translation RUN [--out DIR] [--json]
        [--sst2-dev FILE] [--lm-valid FILE] [--m30k-source FILE --m30k-target FILE]
        [--calls 200] [--sentences 1014] [--quantize none,dynamic,float16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

ROUNDS = 3  # generation runs per variant; the fastest counts (the machine is shared)
SHARED = Path(os.environ.get("TEXTRNN_SHARED_DATA", ROOT.parent / "shared" / "data"))


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def percentiles(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def exports(run_dir: Path, out: Path, quantizations: list[str]) -> dict[str, dict]:
    """The SavedModel and each LiteRT variant: path, size and load time."""
    import tensorflow as tf

    from textrnn import export
    from textrnn.edge.convert import export_litert
    from textrnn.edge.runtime import EdgeExport

    saved = export.export_run(run_dir, out / "saved_model")
    loaded, seconds = timed(tf.saved_model.load, str(saved))
    variants = {"savedmodel": {"path": saved, "size": directory_size(saved), "load_s": seconds}}
    variants["savedmodel"]["loaded"] = loaded
    for quantize in quantizations:
        path = export_litert(run_dir, out / f"litert_{quantize}", quantize=quantize)
        opened, seconds = timed(EdgeExport.open, path)
        size = (path / "model.tflite").stat().st_size
        variants[quantize] = {"path": path, "size": size, "load_s": seconds, "loaded": opened}
    return variants


def bench_sentiment(run_dir: Path, out: Path, quantizations, dev: Path, calls: int) -> dict:
    import tensorflow as tf

    from textrnn.edge.classifier import EdgeClassifier
    from textrnn.sentiment.data import Labels, labels_to_ids, read_examples

    examples = read_examples(str(dev), "content", "label", "utf-8", "--data")
    keep, truth_ids, _ = labels_to_ids(examples, Labels.load(run_dir))
    texts = [examples.texts[i] for i in keep]
    variants = exports(run_dir, out, quantizations)
    serve = variants["savedmodel"]["loaded"].signatures["serving_default"]

    results = {}
    for name, variant in variants.items():
        if name == "savedmodel":

            def classify(text, serve=serve):
                return int(np.argmax(serve(text=tf.constant([text]))["probabilities"][0]))
        else:
            classifier = EdgeClassifier(variant["loaded"])

            def classify(text, classifier=classifier):
                return int(np.argmax(classifier.probabilities(text)))

        classify(texts[0])  # warm-up (traces the SavedModel function)
        latencies = [timed(classify, text)[1] for text in texts[:calls]]
        predicted = [classify(text) for text in texts]
        accuracy = np.mean(np.array(predicted) == truth_ids)
        results[name] = {
            "size_mb": variant["size"] / 1e6,
            "load_s": variant["load_s"],
            **percentiles(latencies),
            "dev_accuracy": float(accuracy),
        }
    return results


def lm_nats_per_char_litert(lm, text: str, streams: int = 32) -> float:
    """Continuous-layout cross entropy through LiteRT `step`, `streams` contiguous rows."""
    ids = [2, *lm.tokenizer.tokenize(text)]  # [BOS] + tokens, as encode_corpus
    inputs, targets = np.array(ids[:-1]), np.array(ids[1:])
    rows = max(1, min(streams, len(targets)))
    length = len(targets) // rows
    states = lm.zero_states(rows)
    total = 0.0
    x = inputs[: rows * length].reshape(rows, length)
    y = targets[: rows * length].reshape(rows, length)
    for t in range(length):
        logits, states = lm.step(x[:, t], states)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        total -= float(log_probs[np.arange(rows), y[:, t]].sum())
    # The remainder (fewer than `rows` tokens) one stream at a time.
    rest_states = lm.zero_states(1)
    for t in range(rows * length, len(targets)):
        logits, rest_states = lm.step(inputs[t : t + 1], rest_states)
        shifted = logits[0] - logits[0].max()
        total -= float(shifted[targets[t]] - np.log(np.exp(shifted).sum()))
    return total / len(targets)


def bench_lm(run_dir: Path, out: Path, quantizations, valid: Path, calls: int) -> dict:
    import tensorflow as tf

    from textrnn import language_model
    from textrnn.edge.generator import EdgeLanguageModel, SamplingOptions

    variants = exports(run_dir, out, quantizations)
    saved = variants["savedmodel"]["loaded"]
    step = saved.signatures["step"]
    manifest = json.loads(
        (variants["savedmodel"]["path"] / "assets.extra" / "textrnn.json").read_text()
    )
    shape = [1, manifest["num_states"], manifest["units"]]
    text = valid.read_text(encoding="utf-8")
    tokens = 200
    results = {}
    # SavedModel: step from Python (as `generate --stream`), and the in-graph loop.
    states = tf.zeros(shape)
    step(token_ids=tf.constant([5]), states=states)
    latencies = [timed(step, token_ids=tf.constant([5]), states=states)[1] for _ in range(calls)]

    def python_loop():
        logits, s = None, tf.zeros(shape)
        token = 2
        for _ in range(tokens):
            outputs = step(token_ids=tf.constant([token]), states=s)
            logits, s = outputs["logits"].numpy(), outputs["states"]
            token = int(np.argmax(logits[0]))

    loop_seconds = min(timed(python_loop)[1] for _ in range(ROUNDS))
    generate = saved.signatures["generate"]
    arguments = {
        "prompt": tf.constant(["ROMEO:"]),
        "max_tokens": tf.constant(tokens),
        "temperature": tf.constant(0.0),
        "top_k": tf.constant(0),
        "top_p": tf.constant(1.0),
        "seed": tf.constant(1, tf.int64),
    }
    generate(**arguments)
    graph_seconds = min(timed(generate, **arguments)[1] for _ in range(ROUNDS))
    evaluated = language_model.evaluate(run_dir, str(valid))
    results["savedmodel"] = {
        "size_mb": variants["savedmodel"]["size"] / 1e6,
        "load_s": variants["savedmodel"]["load_s"],
        **percentiles(latencies),
        "tokens_per_s_step_from_python": tokens / loop_seconds,
        "tokens_per_s_in_graph_generate": tokens / graph_seconds,
        "nats_per_char": evaluated["nats_per_token"],
    }
    for name in quantizations:
        lm = EdgeLanguageModel(variants[name]["loaded"])
        zero = lm.zero_states()
        lm.step(np.array([5]), zero)
        latencies = [timed(lm.step, np.array([5]), zero)[1] for _ in range(calls)]
        options = SamplingOptions(max_tokens=tokens, temperature=0.0, seed=1)
        ids = lm.generate_ids("ROMEO:", options)
        seconds = min(timed(lm.generate_ids, "ROMEO:", options)[1] for _ in range(ROUNDS))
        results[name] = {
            "size_mb": variants[name]["size"] / 1e6,
            "load_s": variants[name]["load_s"],
            **percentiles(latencies),
            "tokens_per_s": len(ids) / seconds,
            "nats_per_char": lm_nats_per_char_litert(lm, text),
        }
    return results


def bench_translation(run_dir, out, quantizations, source: Path, target: Path, count: int):
    import sacrebleu
    import tensorflow as tf

    from textrnn.edge.translator import EdgeTranslator

    sources = source.read_text(encoding="utf-8").splitlines()[:count]
    references = target.read_text(encoding="utf-8").splitlines()[:count]
    variants = exports(run_dir, out, quantizations)
    translate = variants["savedmodel"]["loaded"].signatures["serving_default"]
    results = {}
    for name, variant in variants.items():
        if name == "savedmodel":

            def one(text, translate=translate):
                return translate(source=tf.constant([text]))["translation"].numpy()[0].decode()
        else:
            translator = EdgeTranslator(variant["loaded"])

            def one(text, translator=translator):
                return translator.translate(text).translation

        one(sources[0])
        started = time.perf_counter()
        hypotheses = [one(text) for text in sources]
        seconds = time.perf_counter() - started
        results[name] = {
            "size_mb": variant["size"] / 1e6,
            "load_s": variant["load_s"],
            "sentences_per_s": len(sources) / seconds,
            "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        }
    return results


def report(task: str, results: dict) -> None:
    base = results["savedmodel"]
    print(f"\n== {task}")
    for name, figures in results.items():
        parts = []
        for key, value in figures.items():
            text = f"{key} {value:.4g}"
            reference = base.get(key) if key in base else base.get("tokens_per_s_step_from_python")
            if name != "savedmodel" and reference and key != "nats_per_char":
                text += f" ({value / reference:.2f}x)"
            parts.append(text)
        print(f"  {name:>10}: " + ", ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentiment", type=Path)
    parser.add_argument("--lm", type=Path)
    parser.add_argument("--translation", type=Path)
    parser.add_argument("--out", type=Path, help="Where the exports go (default: a temp dir).")
    parser.add_argument("--sst2-dev", type=Path, default=SHARED / "sst2" / "dev.tsv")
    parser.add_argument("--lm-valid", type=Path, default=SHARED / "tinyshakespeare" / "valid.txt")
    parser.add_argument("--m30k-source", type=Path, default=SHARED / "multi30k" / "val.en")
    parser.add_argument("--m30k-target", type=Path, default=SHARED / "multi30k" / "val.de")
    parser.add_argument("--calls", type=int, default=200, help="Latency samples per variant.")
    parser.add_argument("--sentences", type=int, default=1014, help="Translation sentences.")
    parser.add_argument("--quantize", default="none,dynamic,float16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quantizations = args.quantize.split(",")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-edge-"))
    results = {}
    if args.sentiment:
        results["sentiment"] = bench_sentiment(
            args.sentiment, out / "sentiment", quantizations, args.sst2_dev, args.calls
        )
        report("sentiment", results["sentiment"])
    if args.lm:
        results["lm"] = bench_lm(args.lm, out / "lm", quantizations, args.lm_valid, args.calls)
        report("lm", results["lm"])
    if args.translation:
        results["translation"] = bench_translation(
            args.translation,
            out / "translation",
            quantizations,
            args.m30k_source,
            args.m30k_target,
            args.sentences,
        )
        report("translation", results["translation"])
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    print(f"\nexports in {out}; {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
