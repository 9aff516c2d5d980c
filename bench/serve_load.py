"""Load test for `textrnn serve` (REST over loopback) against a sentiment export.

Starts the server as a subprocess (batching off, then on), runs N concurrent
clients x M requests each (one instance per request, keep-alive
connections, clients spread over a few processes so the client's own GIL
is not the bottleneck) and prints requests/s, p50 / p99 latency, errors and
the server's resident memory before and after; then the same SavedModel
called in-process as the floor. Every loop is bounded (M requests per
client and --max-seconds overall); only 127.0.0.1 is used.

Goals (issue 5, on a 2-core machine): batch-1 p50 <= 5 ms and p99 <= 20 ms;
batching on >= 5x the throughput of batching off at 32 clients; 100,000
requests with 0 errors and no memory growth (`--requests 3125` with 32 clients).

    python bench/serve_load.py                       # default-size model, 32 clients x 200
    python bench/serve_load.py --requests 3125       # the 100,000-request soak
    python bench/serve_load.py --model-base-path saved_models   # an existing sentiment export
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "an engaging , funny and thoroughly charming film",
    "the plot is thin and the acting is painfully wooden",
    "a quiet story told with real warmth and care",
    "it drags on far too long and never finds its footing",
]


# ----------------------------------------------------------------------------- clients (spawned processes)


def _client_thread(port: int, path: str, count: int, deadline: float, out: list) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, errors = [], 0
    headers = {"Content-Type": "application/json"}
    bodies = [json.dumps({"instances": [text]}).encode() for text in TEXTS]
    for index in range(count):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        try:
            connection.request("POST", path, bodies[index % len(bodies)], headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies.append(time.perf_counter() - start)
    connection.close()
    out.append((latencies, errors))


def _client_process(port: int, path: str, threads: int, count: int, deadline: float, queue) -> None:
    results: list = []
    workers = [
        threading.Thread(target=_client_thread, args=(port, path, count, deadline, results))
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put(results)


def run_clients(
    port: int, clients: int, requests: int, max_seconds: float, model: str = "sentiment"
) -> dict:
    """`clients` keep-alive clients x `requests` each; latency list, error count, wall time."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes_count = min(clients, 4)
    per_process = [
        clients // processes_count + (1 if i < clients % processes_count else 0)
        for i in range(processes_count)
    ]
    deadline = time.monotonic() + max_seconds
    path = f"/v1/models/{model}:predict"
    processes = [
        context.Process(target=_client_process, args=(port, path, n, requests, deadline, queue))
        for n in per_process
    ]
    start = time.perf_counter()
    for process in processes:
        process.start()
    results = []
    for _ in processes:
        results.extend(queue.get(timeout=max_seconds + 120))
    elapsed = time.perf_counter() - start
    for process in processes:
        process.join(10)
    latencies = sorted(x for lats, _ in results for x in lats)
    return {"latencies": latencies, "errors": sum(e for _, e in results), "seconds": elapsed}


# ----------------------------------------------------------------------------- server process


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text)[1]) / 1024


class ServerProcess:
    def __init__(self, base: Path, *options: str) -> None:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        command = [
            sys.executable,
            "-m",
            "textrnn",
            "serve",
            "--model-base-path",
            str(base),
            "--rest-port",
            "0",
            "--grpc-port",
            "-1",
            "--poll-seconds",
            "0",
            *options,
        ]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.port = 0
        deadline = time.monotonic() + 300
        assert self.process.stdout is not None
        for line in self.process.stdout:
            found = re.search(r"REST http://127\.0\.0\.1:(\d+)/", line)
            if found:
                self.port = int(found[1])
                break
            if time.monotonic() > deadline:
                break
        if not self.port:
            self.stop()
            raise SystemExit("textrnn serve did not start")
        threading.Thread(
            target=self.process.stdout.read, daemon=True
        ).start()  # keep the pipe drained

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


# ----------------------------------------------------------------------------- model


def build_export(workdir: Path, rows: int, implementation: str = "keras") -> Path:
    """A default-size sentiment model (128-dim embedding, 128-unit LSTM) trained briefly, exported.

    `implementation` "keras" builds Keras's LSTM; "auto" lets `RNNStack` pick (on CPU the
    XLA-compiled `textrnn.fast_rnn` loop, whose serving graph compiles once per new input
    shape: with batching, every new merged batch size).
    """
    code = f"""
import sys
from textrnn import export, rnn_stack, sentiment, training
if {implementation!r} != "auto":
    rnn_stack.resolve_implementation = lambda implementation, cell: {implementation!r}
from textrnn.config import load_config
lines = open({str(REPO / "tasks/sentiment/data/train.tsv")!r}, encoding='utf-8').read().splitlines()
open({str(workdir / "train.tsv")!r}, 'w', encoding='utf-8').write('\\n'.join(lines[: {rows} + 1]) + '\\n')
config = load_config(sentiment.Config, None, {{'data.train': {str(workdir / "train.tsv")!r},
    'data.label_column': 'label', 'data.text_column': 'sentence', 'training.epochs': 1}})
training.train(sentiment, config, {str(workdir / "run")!r}, restart=True, echo=lambda line: None, verbose=0)
print(export.export_run({str(workdir / "run")!r}, {str(workdir / "models" / "sentiment")!r}))
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=900,
    )
    return workdir / "models"


def in_process_floor(base: Path, model: str, calls: int) -> dict:
    """The same signature called directly: batch-1 latency and batch-32 rows/s."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 - registers its ops

    versions = sorted(int(p.name) for p in (base / model).iterdir() if p.name.isdigit())
    serve = tf.saved_model.load(str(base / model / str(versions[-1]))).signatures["serving_default"]
    one = tf.constant(TEXTS[:1])
    batch = tf.constant((TEXTS * 8)[:32])
    for _ in range(20):
        serve(text=one)
        serve(text=batch)
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        serve(text=one)["probabilities"].numpy()
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    batches = max(1, calls // 8)
    for _ in range(batches):
        serve(text=batch)["probabilities"].numpy()
    rows_per_second = batches * 32 / (time.perf_counter() - start)
    return {"latencies": sorted(latencies), "rows_per_second": rows_per_second}


# ----------------------------------------------------------------------------- report


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-base-path", type=Path, help="Holds <model>/<version>/; default: build one."
    )
    parser.add_argument("--model", default="sentiment", help="Model name under the base path.")
    parser.add_argument(
        "--clients", type=int, default=32, help="Concurrent clients for the throughput runs."
    )
    parser.add_argument("--requests", type=int, default=200, help="Requests per client.")
    parser.add_argument(
        "--latency-requests", type=int, default=1000, help="Sequential batch-1 requests."
    )
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-micros", type=int, default=2000)
    parser.add_argument(
        "--train-rows", type=int, default=400, help="Rows to train the built model on."
    )
    parser.add_argument(
        "--implementation",
        default="keras",
        choices=("keras", "fast", "auto"),
        help="RNN layers of the built model (fast/auto: XLA loops that compile per input shape).",
    )
    parser.add_argument("--max-seconds", type=float, default=900, help="Bound on each client run.")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="serve_load-"))
    try:
        if args.model_base_path:
            base = args.model_base_path
        else:
            print(
                f"building a default-size sentiment export ({args.train_rows} rows, 1 epoch, "
                f"{args.implementation} RNN layers) ...",
                flush=True,
            )
            base = build_export(workdir, args.train_rows, args.implementation)
        print(
            f"cores: {os.cpu_count()}   clients: {args.clients} x {args.requests} requests, 1 instance each"
        )
        header = f"{'batching':<9} {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'rss MB before':>13} {'after':>7}"
        print(header)
        throughput = {}
        for mode, options in (
            ("off", ()),
            (
                "on",
                (
                    "--enable-batching",
                    "--max-batch-size",
                    str(args.max_batch_size),
                    "--batch-timeout-micros",
                    str(args.batch_timeout_micros),
                ),
            ),
        ):
            server = ServerProcess(base, *options)
            try:
                run_clients(server.port, 4, 25, 120, args.model)  # warm connections and code paths
                before = rss_mb(server.process.pid)
                for clients, requests in (
                    (1, args.latency_requests),
                    (args.clients, args.requests),
                ):
                    result = run_clients(
                        server.port, clients, requests, args.max_seconds, args.model
                    )
                    lat = result["latencies"]
                    rate = len(lat) / result["seconds"]
                    after = rss_mb(server.process.pid)
                    if clients == args.clients:
                        throughput[mode] = rate
                    print(
                        f"{mode:<9} {clients:>7} {len(lat):>8} {rate:>8.0f} {percentile(lat, 0.5) * 1e3:>7.2f} "
                        f"{percentile(lat, 0.99) * 1e3:>7.2f} {result['errors']:>6} {before:>13.0f} {after:>7.0f}",
                        flush=True,
                    )
            finally:
                server.stop()
        floor = in_process_floor(base, args.model, args.latency_requests)
        lat = floor["latencies"]
        print(
            f"in-process floor: batch-1 p50 {percentile(lat, 0.5) * 1e3:.2f} ms, p99 {percentile(lat, 0.99) * 1e3:.2f} ms, "
            f"{1 / statistics.mean(lat):.0f} calls/s; batch-32 {floor['rows_per_second']:.0f} rows/s"
        )
        if "on" in throughput and "off" in throughput:
            print(
                f"batching on / off at {args.clients} clients: {throughput['on'] / throughput['off']:.2f}x (goal >= 5x)"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
