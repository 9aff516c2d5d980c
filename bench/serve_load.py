"""Load test for `textrnn serve` (REST over loopback) against a sentiment export.

Starts the server as a subprocess (batching off, then on), runs N concurrent
clients x M requests each (one instance per request, keep-alive
connections, each client waiting for its answer before the next request;
the clients run on one asyncio loop in a separate process, so the load
generator itself costs little of the 2 cores it shares with the server) and prints requests/s,
p50 / p99 latency, errors and
the server's CPU time per request and resident memory before and after
(issue 20 compared the REST front ends this way: docs/results.md); then the same SavedModel
called in-process as the floor. Every loop is bounded (M requests per
client and --max-seconds overall); only 127.0.0.1 is used.

Goals (issue 5, on a 2-core machine): batch-1 p50 <= 5 ms and p99 <= 20 ms;
batching on >= 5x the throughput of batching off at 32 clients; 100,000
requests with 0 errors and no memory growth (`--requests 3125` with 32 clients).

    python bench/serve_load.py                       # default-size model, 32 clients x 200
    python bench/serve_load.py --requests 3125       # the 100,000-request soak
    python bench/serve_load.py --model-base-path saved_models   # an existing sentiment export
    python bench/serve_load.py --baseline-tree ../other-worktree   # compare two source trees
    python bench/serve_load.py --stream              # :generate_stream (bench/serve_stream.py)
"""

from __future__ import annotations

import argparse
import asyncio
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


# ---------------------------------------------------------------- clients (spawned processes)


def _request_bytes(port: int, path: str) -> list[bytes]:
    bodies = [json.dumps({"instances": [text]}).encode() for text in TEXTS]
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


class _KeepAliveClient(asyncio.Protocol):
    """One keep-alive connection sending a request, waiting for its whole answer, and so on."""

    def __init__(self, requests: list[bytes], count: int, deadline: float, done) -> None:
        self.requests, self.count, self.deadline, self.done = requests, count, deadline, done
        self.latencies: list[float] = []
        self.errors = 0
        self.buffer = b""
        self.sent_at = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if len(self.latencies) >= self.count or time.monotonic() > self.deadline:
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(self.requests[len(self.latencies) % len(self.requests)])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[: end + 2]  # the last header line keeps its CRLF
        start = head.lower().find(b"\r\ncontent-length:") + 17  # any header-name case
        length = int(head[start : head.index(b"\r\n", start)])
        if len(self.buffer) < end + 4 + length:
            return
        self.latencies.append(time.perf_counter() - self.sent_at)
        if not head.startswith(b"HTTP/1.1 200 "):
            self.errors += 1
        self.buffer = self.buffer[end + 4 + length :]
        self._send()

    def connection_lost(self, exc) -> None:
        if len(self.latencies) < self.count and time.monotonic() <= self.deadline:
            self.errors += 1  # the server closed the connection early
        if not self.done.done():
            self.done.set_result(None)


def _client_process(
    port: int, path: str, connections: int, count: int, deadline: float, queue
) -> None:
    """`connections` keep-alive clients on one asyncio loop (cheap per request, so the
    load generator takes little of the cores it shares with the server)."""

    async def main() -> list:
        loop = asyncio.get_running_loop()
        protocols: list[_KeepAliveClient] = []
        requests = _request_bytes(port, path)
        waits = []
        started = time.time()
        for _ in range(connections):
            done = loop.create_future()
            _, protocol = await loop.create_connection(
                lambda done=done: _KeepAliveClient(requests, count, deadline, done),
                "127.0.0.1",
                port,
            )
            protocols.append(protocol)
            waits.append(done)
        await asyncio.gather(*waits)
        return [(p.latencies, p.errors) for p in protocols], started, time.time()

    try:  # uvloop (the `serving` extra) makes each request cheaper for the load generator too
        import uvloop
    except ImportError:
        queue.put(asyncio.run(main()))
    else:
        queue.put(uvloop.run(main()))


def run_clients(
    port: int,
    clients: int,
    requests: int,
    max_seconds: float,
    model: str = "sentiment",
    processes: int = 1,
) -> dict:
    """`clients` keep-alive clients x `requests` each; latency list, error count, wall time."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes_count = max(1, min(clients, processes))
    per_process = [
        clients // processes_count + (1 if i < clients % processes_count else 0)
        for i in range(processes_count)
    ]
    deadline = time.monotonic() + max_seconds
    path = f"/v1/models/{model}:predict"
    workers = [
        context.Process(target=_client_process, args=(port, path, n, requests, deadline, queue))
        for n in per_process
    ]
    for worker in workers:
        worker.start()
    results, starts, ends = [], [], []
    for _ in workers:
        found, started, ended = queue.get(timeout=max_seconds + 120)
        results.extend(found)
        starts.append(started)
        ends.append(ended)
    elapsed = max(ends) - min(starts)  # the clients' own clocks: process start-up is not counted
    for worker in workers:
        worker.join(10)
    latencies = sorted(x for lats, _ in results for x in lats)
    return {"latencies": latencies, "errors": sum(e for _, e in results), "seconds": elapsed}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- server process


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text)[1]) / 1024


class ServerProcess:
    def __init__(self, base: Path, *options: str, tree: Path = REPO) -> None:
        """`textrnn serve` of the source tree `tree` (this one, or --baseline-tree's)."""
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH", "")]))
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

    `implementation` "keras" builds Keras's LSTM; "fast" / "auto" (on CPU) build textrnn's
    `FastLSTM`, which trains with the XLA-compiled `textrnn.layers.fast_rnn` loop. Inference, and so
    the export, runs Keras's loop either way (no per-shape compile on requests): the choice
    changes only how long the build's training takes.
    """
    code = f"""
import sys
from textrnn import export, sentiment
from textrnn.layers import rnn_stack
from textrnn.training import fit
if {implementation!r} != "auto":
    rnn_stack.resolve_implementation = lambda implementation, cell: {implementation!r}
from textrnn.config import load_config
lines = open({str(REPO / "tasks/sentiment/data/train.tsv")!r}, encoding='utf-8').read().splitlines()
sample = '\\n'.join(lines[: {rows} + 1]) + '\\n'
open({str(workdir / "train.tsv")!r}, 'w', encoding='utf-8').write(sample)
config = load_config(sentiment.Config, None, {{'data.train': {str(workdir / "train.tsv")!r},
    'data.label_column': 'label', 'data.text_column': 'sentence', 'training.epochs': 1}})
fit.train(sentiment.TASK, config, {str(workdir / "run")!r}, restart=True,
          echo=lambda line: None, verbose=0)
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


def run_plan(servers: dict[tuple[str, str], ServerProcess], args: argparse.Namespace) -> tuple:
    """Batch-1 latency on each server, then `args.rounds` throughput rounds visiting each
    in turn (so load from the machine's other work falls on each alike). `servers` is keyed
    by (tree, batching mode)."""
    rss = {}
    for key, server in servers.items():
        run_clients(server.port, 4, 25, 120, args.model)  # warm connections and code paths
        rss[key] = [rss_mb(server.process.pid)]
    print(
        f"{'round':<6} {'tree':<9} {'batching':<9} {'clients':>7} {'requests':>8} "
        f"{'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'server CPU us/req':>17}"
    )
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in servers}
    cpus: dict[tuple[str, str], list[float]] = {key: [] for key in servers}
    errors = 0
    plan = [("-", key, 1, args.latency_requests) for key in servers] + [
        (str(r + 1), key, args.clients, args.requests)
        for r in range(args.rounds)
        for key in servers
    ]
    for label, key, clients, requests in plan:
        server = servers[key]
        cpu_before = cpu_seconds(server.process.pid)
        result = run_clients(
            server.port, clients, requests, args.max_seconds, args.model, args.client_processes
        )
        lat = result["latencies"]
        rate = len(lat) / result["seconds"]
        cpu = (cpu_seconds(server.process.pid) - cpu_before) / max(1, len(lat))
        errors += result["errors"]
        if clients == args.clients:
            rates[key].append(rate)
            cpus[key].append(cpu)
        print(
            f"{label:<6} {key[0]:<9} {key[1]:<9} {clients:>7} {len(lat):>8} {rate:>8.0f} "
            f"{percentile(lat, 0.5) * 1e3:>7.2f} {percentile(lat, 0.99) * 1e3:>7.2f} "
            f"{result['errors']:>6} {cpu * 1e6:>17.0f}",
            flush=True,
        )
    for key, server in servers.items():
        rss[key].append(rss_mb(server.process.pid))
    return rates, cpus, errors, rss


def report_rates(rates: dict, cpus: dict, trees: list[str], clients: int) -> None:
    """Medians per tree, batching on / off per round, and this tree against the baseline's."""
    for tree in trees:
        off, on = rates[tree, "off"], rates[tree, "on"]
        if not (off and on):
            continue
        ratios = [b / a for a, b in zip(off, on, strict=True)]
        print(
            f"{tree}: batching at {clients} clients: off {statistics.median(off):.0f} req/s "
            f"({statistics.median(cpus[tree, 'off']) * 1e6:.0f} us server CPU/req), "
            f"on {statistics.median(on):.0f} req/s "
            f"({statistics.median(cpus[tree, 'on']) * 1e6:.0f} us server CPU/req); on / off "
            "per round "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + f"; median {statistics.median(ratios):.2f}x (goal >= 5x)"
        )
    if "baseline" not in trees:
        return
    for mode in ("off", "on"):
        ratios = [
            new / old for old, new in zip(rates["baseline", mode], rates["this", mode], strict=True)
        ]
        cpu_ratio = statistics.median(cpus["baseline", mode]) / statistics.median(
            cpus["this", mode]
        )
        print(
            f"this tree / baseline tree, batching {mode}: throughput per round "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + f"; median {statistics.median(ratios):.2f}x; "
            f"baseline / this server CPU per request {cpu_ratio:.2f}x"
        )


def main(argv: list[str] | None = None) -> None:
    # `--stream` picks the benchmark; the options after it are that benchmark's own.
    mode = argparse.ArgumentParser(add_help=False)
    mode.add_argument(
        "--stream",
        action="store_true",
        help="Measure :generate_stream against :predict on a language model instead "
        "(bench/serve_stream.py; `--stream --help` lists its options).",
    )
    known, rest = mode.parse_known_args(argv)
    if known.stream:  # issue 17
        import serve_stream

        serve_stream.main(rest, prog=f"{Path(sys.argv[0]).name} --stream")
        return
    run(parse_args(mode, rest))


def parse_args(mode: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """The load benchmark's options (`mode` holds --stream, so --help lists it too)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[mode])
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
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="Processes the clients are spread over "
        "(each runs its connections on one asyncio loop).",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="Alternating off / on throughput rounds."
    )
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--num-batch-threads", type=int, default=2)
    parser.add_argument(
        "--batch-timeout-micros",
        type=int,
        default=5000,
        help="Long enough for 32 answered clients to send again and fill a batch of 32 here "
        "(2000 closed batches half full); a lone request waits this long.",
    )
    parser.add_argument(
        "--train-rows", type=int, default=400, help="Rows to train the built model on."
    )
    parser.add_argument(
        "--implementation",
        default="keras",
        choices=("keras", "fast", "auto"),
        help="RNN layers of the built model "
        "(fast/auto train with XLA loops; exports run Keras's loop).",
    )
    parser.add_argument("--max-seconds", type=float, default=900, help="Bound on each client run.")
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=0,
        help="--tensorflow-intra-op-parallelism for both servers (0: TensorFlow's default).",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="Also serve from this source tree (a git worktree of another commit or branch) "
        "and compare: both trees' servers take turns in every round.",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    """Serve the export from each tree (batching off and on), load it, report."""
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
        batching = (
            "--enable-batching",
            "--max-batch-size",
            str(args.max_batch_size),
            "--batch-timeout-micros",
            str(args.batch_timeout_micros),
            "--num-batch-threads",
            str(args.num_batch_threads),
        )
        print(
            f"cores: {os.cpu_count()}   clients: {args.clients} x {args.requests} requests, "
            f"1 instance each; {args.rounds} rounds alternating batching off / on "
            f"(on: {' '.join(batching[1:])}); "
            f"intra-op threads {args.intra_op_threads or 'default'}",
            flush=True,
        )
        threads = ("--tensorflow-intra-op-parallelism", str(args.intra_op_threads))
        trees = {"this": REPO}
        if args.baseline_tree:
            trees["baseline"] = args.baseline_tree.resolve()
        servers: dict[tuple[str, str], ServerProcess] = {}
        try:
            for name, tree in trees.items():
                servers[name, "off"] = ServerProcess(base, *threads, tree=tree)
                servers[name, "on"] = ServerProcess(base, *batching, *threads, tree=tree)
            rates, cpus, errors, rss = run_plan(servers, args)
        finally:
            for server in servers.values():
                server.stop()
        print(
            "server RSS MB before -> after: "
            + ", ".join(
                f"{tree} batching {mode} {a:.0f} -> {b:.0f}" for (tree, mode), (a, b) in rss.items()
            )
        )
        print(f"errors: {errors}")
        report_rates(rates, cpus, list(trees), args.clients)
        floor = in_process_floor(base, args.model, args.latency_requests)
        lat = floor["latencies"]
        print(
            f"in-process floor: batch-1 p50 {percentile(lat, 0.5) * 1e3:.2f} ms, "
            f"p99 {percentile(lat, 0.99) * 1e3:.2f} ms, "
            f"{1 / statistics.mean(lat):.0f} calls/s; "
            f"batch-32 {floor['rows_per_second']:.0f} rows/s"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
