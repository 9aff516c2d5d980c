"""Training throughput: 1 replica, 2 logical CPU replicas (MirroredStrategy), 2 worker processes.

Each configuration trains the same tiny sentiment model on the same synthetic
data with the same global batch through the real CLI, and the throughput is
training examples per second over the epochs after the first (compilation
excluded). Scaling efficiency = throughput(N replicas) / (N x throughput(1)).
On a 2-core CPU shared with other work expect well below 1: the harness is
the point, ready to rerun on GPUs (drop TEXTRNN_CPU_DEVICES; `--strategy mirrored`
takes every GPU) or machines (`--worker-hosts`).

    .venv/bin/python bench/scaling.py [--rows 2000] [--epochs 3] [--batch-size 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

# The tests' tiny sentiment model, made wide enough for steps to cost more than their overhead.
SIZE = {
    "data.max_length": 32,
    "tokenizer.vocabulary_size": 200,
    "model.embedding_dim": 32,
    "model.stack.units": 32,
    "training.jit_compile": "false",
}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def epoch_seconds(output: str) -> list[float]:
    return [float(m) for m in re.findall(r"^epoch \d+/\d+ \(([\d.]+) s\)", output, re.M)]


def run(args: list[str], cwd: Path, timeout: float) -> str:
    env = dict(
        os.environ,
        CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=str(REPO),
    )
    processes = []
    try:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "textrnn", *a],
                cwd=cwd,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for a in args
        ]
        outputs = [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(processes, outputs, strict=True):
        if p.returncode:
            raise SystemExit(
                f"failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}"
            )
    return outputs[0][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    if options.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch (compilation) is not timed")
    from helpers import tiny_train_command

    with tempfile.TemporaryDirectory() as directory:
        cwd = Path(directory)
        common = tiny_train_command(
            cwd, options.rows, 64, options.epochs, options.batch_size, **SIZE
        )
        hosts = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
        configurations = {
            "1 replica": ([[*common, "--run-dir", "one", "--strategy", "cpu"]], 1),
            "2 logical CPU replicas": (
                [[*common, "--run-dir", "mirrored", "--strategy", "mirrored"]],
                2,
            ),
            "2 worker processes": (
                [
                    [
                        *common,
                        "--run-dir",
                        f"w{i}",
                        "--strategy",
                        "multiworker",
                        "--worker-hosts",
                        hosts,
                        "--task-index",
                        str(i),
                    ]
                    for i in range(2)
                ],
                2,
            ),
        }
        results = {}
        examples = (
            options.rows // options.batch_size * options.batch_size
        )  # static shapes drop the remainder
        for name, (args, replicas) in configurations.items():
            seconds = epoch_seconds(run(args, cwd, options.timeout))[1:] or [float("nan")]
            throughput = examples / (sum(seconds) / len(seconds))
            results[name] = {"replicas": replicas, "examples_per_second": round(throughput, 1)}
        base = results["1 replica"]["examples_per_second"]
        for value in results.values():
            value["scaling_efficiency"] = round(
                value["examples_per_second"] / (value["replicas"] * base), 3
            )
    if options.json:
        print(json.dumps(results))
        return
    print(f"{'configuration':<26}{'examples/s':>12}{'efficiency':>12}")
    for name, value in results.items():
        print(
            f"{name:<26}{value['examples_per_second']:>12.1f}{value['scaling_efficiency']:>12.2f}"
        )


if __name__ == "__main__":
    main()
