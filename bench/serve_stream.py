"""`bench/serve_load.py --stream`: `:generate_stream` against `:predict` on a language model.

Starts `textrnn serve` (batching off, then on) over a language-model export
and, for 1 and for N concurrent clients (default 32), runs the same
generation request both ways: streamed (server-sent events, one piece per
token) and as one `:predict` on the `generate` signature. It prints the time
to first token (for `:predict`, the whole answer: nothing shows before it),
tokens/s per stream, and the aggregate tokens/s, with streaming's aggregate as
a ratio of `:predict`'s measured in the same run, and the server's rows per
model call (from its Prometheus counters: how many requests or streams each
call merged). Only 127.0.0.1 is used.

Goals (issue 17, on a 2-core machine): first token within 20 ms at one
stream; at 32 streams, streaming tokens/s >= 80% of `:predict`'s request rate
times tokens.

    python bench/serve_load.py --stream                              # saved_models/lm (make demo)
    python bench/serve_load.py --stream --model-base-path DIR --model lm --max-tokens 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from serve_load import ServerProcess, cpu_seconds, percentile

PROMPT = "ROMEO:"


async def _stream(session, url: str, body: dict) -> dict:
    """One `:generate_stream`: time to first piece, time to done, tokens."""
    started = time.perf_counter()
    first = None
    async with session.post(f"{url}:generate_stream", json=body) as response:
        if response.status != 200:
            return {"error": f"{response.status} {await response.text()}"}
        kind = "message"
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                if kind == "message" and first is None:
                    first = time.perf_counter() - started
                if kind == "done":
                    total = time.perf_counter() - started
                    tokens = json.loads(line[5:])["tokens"]
                    return {"first": first or total, "total": total, "tokens": tokens}
                if kind == "error":
                    return {"error": line}
    return {"error": "the stream ended without `done`"}


async def _predict(session, url: str, body: dict) -> dict:
    started = time.perf_counter()
    request = {"signature_name": "generate", "inputs": {**body, "prompt": [body["prompt"]]}}
    async with session.post(f"{url}:predict", json=request) as response:
        answer = await response.json()
    total = time.perf_counter() - started
    if response.status != 200:
        return {"error": f"{response.status} {answer}"}
    return {"first": total, "total": total, "tokens": int(answer["outputs"]["num_tokens"][0])}


async def _clients(port: int, model: str, how, clients: int, rounds: int, knobs: dict) -> dict:
    """`clients` concurrent clients, each sending `rounds` requests one after the other."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/models/{model}"
    timeout = aiohttp.ClientTimeout(total=600)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def client(index: int) -> list[dict]:
            return [
                await how(session, url, {"prompt": PROMPT, **knobs, "seed": index * 1000 + r})
                for r in range(rounds)
            ]

        started = time.perf_counter()
        results = await asyncio.gather(*(client(i) for i in range(clients)))
        seconds = time.perf_counter() - started
    flat = [r for rs in results for r in rs]
    good = [r for r in flat if "error" not in r]
    return {
        "seconds": seconds,
        "errors": [r["error"] for r in flat if "error" in r],
        "first": sorted(r["first"] for r in good),
        "per_stream": sorted(r["tokens"] / r["total"] for r in good),
        "tokens": sum(r["tokens"] for r in good),
    }


def _counters(port: int) -> dict[str, float]:
    """The server's Prometheus counters (model calls, rows they merged)."""
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{port}/monitoring/prometheus/metrics", timeout=30) as answer:
        lines = answer.read().decode().splitlines()
    return {
        name: float(value)
        for name, value in (line.split() for line in lines if line and not line.startswith("#"))
    }


def _row(mode: str, clients: int, kind: str, result: dict, cpu: float, rows: float) -> str:
    aggregate = result["tokens"] / result["seconds"]
    return (
        f"{mode:<9} {clients:>7} {kind:<8} {percentile(result['first'], 0.5) * 1e3:>11.1f} "
        f"{percentile(result['first'], 0.99) * 1e3:>11.1f} "
        f"{statistics.median(result['per_stream'] or [0]):>12.0f} {aggregate:>10.0f} "
        f"{len(result['errors']):>6} {cpu * 1e6 / max(result['tokens'], 1):>15.0f} {rows:>9.1f}"
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Parse `argv` (default: the command line) and run the benchmark."""
    args = parse_args(argv, prog)
    knobs = {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_k": 0,
        "top_p": args.top_p,
    }
    batching = (
        "--enable-batching",
        "--max-batch-size",
        str(args.max_batch_size),
        "--batch-timeout-micros",
        str(args.batch_timeout_micros),
    )
    print(
        f"cores: {os.cpu_count()}   model: {args.model_base_path / args.model}   prompt "
        f"{PROMPT!r}, {knobs}; 1 client x {args.single_rounds} and {args.clients} clients x "
        f"{args.rounds}, each way; batching on: {' '.join(batching[1:])}",
        flush=True,
    )
    print(
        f"{'batching':<9} {'clients':>7} {'way':<8} {'first p50 ms':>11} {'first p99 ms':>11} "
        f"{'tok/s/stream':>12} {'tok/s all':>10} {'errors':>6} {'server CPU us/tok':>15} "
        f"{'rows/call':>9}"
    )
    aggregate: dict[tuple[str, int, str], float] = {}
    firsts: dict[tuple[str, str], float] = {}
    for mode, options in (("off", ()), ("on", batching)):
        server = ServerProcess(args.model_base_path, *options)
        try:
            rates, first_p50s = _measure(server, args, knobs, mode)
        finally:
            server.stop()
        aggregate.update({(mode, *key): rate for key, rate in rates.items()})
        firsts.update({(mode, kind): first for kind, first in first_p50s.items()})
    _report(args, aggregate, firsts)


def parse_args(argv: list[str] | None, prog: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", type=Path, default=Path("saved_models"))
    parser.add_argument(
        "--model", default="lm", help="A language-model export under the base path."
    )
    parser.add_argument("--clients", type=int, default=32, help="Concurrent streams / requests.")
    parser.add_argument("--rounds", type=int, default=2, help="Requests per client, in sequence.")
    parser.add_argument("--single-rounds", type=int, default=10, help="Requests at 1 client.")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-micros", type=int, default=2000)
    args = parser.parse_args(argv)
    if not (args.model_base_path / args.model).is_dir():
        raise SystemExit(
            f"no {args.model_base_path / args.model}: run `make demo` (it exports saved_models/lm) "
            "or pass --model-base-path and --model"
        )
    return args


def _measure(
    server: ServerProcess,
    args: argparse.Namespace,
    knobs: dict[str, Any],
    mode: str,
) -> tuple[dict[tuple[int, str], float], dict[str, float]]:
    """Streams against `:predict` at 1 and `--clients` clients on one server; prints a row
    each. Returns tokens/s by (clients, way) and the first-token p50 at 1 client by way."""
    rates: dict[tuple[int, str], float] = {}
    first_p50s: dict[str, float] = {}
    for how in (_stream, _predict):  # warm-up: traces, connections
        asyncio.run(_clients(server.port, args.model, how, 4, 1, knobs))
    for clients, rounds in ((1, args.single_rounds), (args.clients, args.rounds)):
        for kind, how in (("stream", _stream), ("predict", _predict)):
            before = cpu_seconds(server.process.pid)
            counted = _counters(server.port)
            result = asyncio.run(_clients(server.port, args.model, how, clients, rounds, knobs))
            cpu = cpu_seconds(server.process.pid) - before
            counts = _counters(server.port)
            calls, rows = (
                counts[key] - counted.get(key, 0)
                for key in (
                    "textrnn_serving_model_calls_total",
                    "textrnn_serving_batched_rows_total",
                )
            )
            print(_row(mode, clients, kind, result, cpu, rows / max(calls, 1)), flush=True)
            for error in result["errors"][:3]:
                print(f"  error: {error}")
            rates[(clients, kind)] = result["tokens"] / result["seconds"]
            if clients == 1:
                first_p50s[kind] = percentile(result["first"], 0.5)
    return rates, first_p50s


def _report(
    args: argparse.Namespace,
    aggregate: dict[tuple[str, int, str], float],
    firsts: dict[tuple[str, str], float],
) -> None:
    for mode in ("off", "on"):
        ratio = (
            aggregate[(mode, args.clients, "stream")] / aggregate[(mode, args.clients, "predict")]
        )
        print(
            f"batching {mode}: first token at 1 stream p50 {firsts[(mode, 'stream')] * 1e3:.1f} ms "
            f"(goal <= 20; :predict's whole answer {firsts[(mode, 'predict')] * 1e3:.1f} ms); "
            f"{args.clients} streams: {aggregate[(mode, args.clients, 'stream')]:.0f} tokens/s = "
            f"{ratio:.2f} x :predict's {aggregate[(mode, args.clients, 'predict')]:.0f} "
            "(goal >= 0.80)"
        )


if __name__ == "__main__":
    main()
