"""PyTorch baseline for bench/lm_throughput.py (issue 7): the same model and shapes.

`bench/train_throughput.py --seq-len N --torch-python PYTHON` runs it between its own rounds.

PyTorch is not a textrnn dependency; run this from a scratch environment:

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python bench/torch_baseline.py --cell lstm --units 256 --layers 2 \\
        --batch-size 64 --seq-len 100 --json

Embedding(vocab, E) -> nn.LSTM / nn.GRU(num_layers) -> Linear(vocab), Adam,
cross-entropy (with `--bf16`, the forward pass under CPU autocast to bfloat16);
prints `torch_tokens_per_s` (median of `--rounds`), and with
`--json` one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--bf16", action="store_true", help="forward pass under CPU autocast to bfloat16"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    recurrent = (nn.LSTM if args.cell == "lstm" else nn.GRU)(
        args.embedding_dim, args.units, num_layers=args.layers, batch_first=True
    )
    model = nn.ModuleDict(
        {
            "embedding": nn.Embedding(args.vocab, args.embedding_dim),
            "rnn": recurrent,
            "output": nn.Linear(args.units, args.vocab),
        }
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_function = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(1, args.vocab, (args.batch_size, args.seq_len + 1), generator=generator)
        for _ in range(8)
    ]

    def step(tokens):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            hidden, _ = model["rnn"](model["embedding"](tokens[:, :-1]))
            logits = model["output"](hidden)
        loss = loss_function(logits.float().reshape(-1, args.vocab), tokens[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()

    for index in range(args.warmup):
        step(batches[index % len(batches)])
    rates = []
    for round_index in range(args.rounds):
        started = time.perf_counter()
        for index in range(args.steps):
            step(batches[index % len(batches)])
        rates.append(args.steps * args.batch_size * args.seq_len / (time.perf_counter() - started))
        print(f"round {round_index + 1} torch: {rates[-1]:,.0f} tokens/s", file=sys.stderr)
    result = {
        "cell": args.cell,
        "units": args.units,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "torch_tokens_per_s": round(statistics.median(rates), 1),
        "torch_runs": [round(r) for r in rates],
    }
    print(f"torch_tokens_per_s: {result['torch_tokens_per_s']}")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
