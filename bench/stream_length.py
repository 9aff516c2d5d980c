"""Long streams: the cost of a streamed token at the end of a long continuation.

A stream's text is shown piece by piece. Before `decoding.stream_text`, every
merged `generate_rows` call sent each stream's whole continuation as `previous`
and detokenized it again, so a call near 10,000 tokens detokenized 10,000 ids
per row, and a stream's cost grew with the square of its length. Now a stream
sends a window of its last ids (`DEFAULT_WINDOW`, moved every window).

This runs the server's streaming path in this process (`Streamer` and its
`RowScheduler` over a loaded export, no HTTP) for `--streams` concurrent
streams of `--max-tokens` tokens each, alternating in every round:

- `whole`: a window larger than any stream (the behaviour before: `previous` is
  the whole continuation, detokenized at every call);
- `window`: the shipped window.

and prints the tokens/s of each (median of `--rounds`) and their ratio. The
texts of both must be identical (checked), so the ratio is the cost of the
detokenizing alone.

    python bench/stream_length.py --model-base-path saved_models/lm/1
    python bench/stream_length.py --model-base-path DIR/1 --max-tokens 10000 --streams 1,8 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from textrnn.decoding import stream_text
from textrnn.serving.execution import Executor, replay_warmup
from textrnn.serving.metrics import Stats
from textrnn.serving.options import ServerOptions
from textrnn.serving.servable import Servable
from textrnn.serving.streaming import Streamer

PROMPT = "ROMEO:"
WHOLE = 10**9  # a window no stream reaches: the anchor never moves


def run_streams(servable: Servable, streams: int, max_tokens: int, window: int):
    """Seconds for `streams` concurrent streams of up to `max_tokens` tokens, their texts and
    their token count."""
    stream_text.DEFAULT_WINDOW = window
    options = ServerOptions(request_timeout_ms=3_600_000)  # the whole streams take minutes
    stats = Stats()
    executor = Executor(options, stats)
    streamer = Streamer(executor, options, stats)
    body = {"prompt": PROMPT, "max_tokens": max_tokens, "temperature": 1.0}

    async def one(seed: int) -> tuple[str, int]:
        stream = streamer.open(servable, {**body, "seed": seed})
        while (event := await stream.next_event()) is not None:
            if event.kind == "done":
                return event.data["text"], event.data["tokens"]
            if event.kind == "error":
                raise RuntimeError(event.data)
        raise RuntimeError("the stream ended without `done`")

    async def run_all() -> list[tuple[str, int]]:
        return await asyncio.gather(*(one(seed) for seed in range(streams)))

    started = time.perf_counter()
    try:
        results = asyncio.run(run_all())
    finally:
        streamer.shutdown(wait=True)
        executor.shutdown()
    elapsed = time.perf_counter() - started
    return elapsed, [text for text, _ in results], sum(count for _, count in results)


def measure(servable: Servable, streams: int, args: argparse.Namespace) -> dict:
    """Alternating rounds of `whole` and `window`: tokens/s of each and the ratio."""
    seconds: dict[str, list[float]] = {"whole": [], "window": []}
    for _ in range(args.rounds):
        texts = {}
        for name, window in (("whole", WHOLE), ("window", args.window)):
            elapsed, texts[name], tokens = run_streams(servable, streams, args.max_tokens, window)
            seconds[name].append(elapsed)
        if texts["whole"] != texts["window"]:
            raise SystemExit("the windowed streams' texts differ from the whole ones")
    rates = {name: tokens / statistics.median(values) for name, values in seconds.items()}
    return {
        "streams": streams,
        "max_tokens": args.max_tokens,
        "tokens": tokens,
        "whole_tokens_per_s": round(rates["whole"], 1),
        "window_tokens_per_s": round(rates["window"], 1),
        "ratio": round(rates["window"] / rates["whole"], 2),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", type=Path, default=Path("saved_models/lm/1"))
    parser.add_argument("--max-tokens", type=int, default=10000)
    parser.add_argument("--streams", default="1,8", help="comma-separated stream counts")
    parser.add_argument("--window", type=int, default=stream_text.DEFAULT_WINDOW)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object per stream count")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    path = args.model_base_path
    servable = Servable(path.parent.name or "lm", int(path.name), path)
    replay_warmup(servable)
    for streams in [int(count) for count in args.streams.split(",")]:
        result = measure(servable, streams, args)
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"{streams} stream(s), {result['tokens']:,} tokens in all: whole "
                f"{result['whole_tokens_per_s']:,.0f} tokens/s, window "
                f"{result['window_tokens_per_s']:,.0f} tokens/s, ratio {result['ratio']:.2f}x"
            )


if __name__ == "__main__":
    main()
