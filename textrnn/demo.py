"""`make demo`: train the bundled recipes, evaluate, export, and show outputs.

Every step is the CLI command a user would type, echoed before it runs, so
the demo doubles as a walk-through of the README.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXTRNN = [sys.executable, "-m", "textrnn.cli"]

SENTIMENT = [
    "sentiment train --config tasks/sentiment/config.toml --run-dir runs/demo/sentiment --restart",
    "sentiment evaluate --run-dir runs/demo/sentiment --data tasks/sentiment/data/dev.tsv",
    "sentiment export --run-dir runs/demo/sentiment --out saved_models/sentiment",
    "sentiment predict --model saved_models/sentiment",
]
SENTIMENT_INPUT = (
    "a gorgeous , witty and moving film .\n"
    "the plot is a mess and the jokes fall flat .\n"
    "not bad at all , though it drags in the middle .\n"
)

LANGUAGE_MODEL = [
    "lm train --config tasks/lm/config.toml --run-dir runs/demo/lm --restart",
    "lm evaluate --run-dir runs/demo/lm --data tasks/lm/data/valid.txt",
    "lm export --run-dir runs/demo/lm --out saved_models/lm",
    "generate --model saved_models/lm --prompt ROMEO: --max-tokens 300 --temperature 0.8 --seed 1",
]

TRANSLATION = [
    "translation train --config tasks/translation/config.toml --run-dir runs/demo/translation --restart",
    "translation evaluate --run-dir runs/demo/translation --source tasks/translation/data/val.en"
    " --target tasks/translation/data/val.de",
    "translation export --run-dir runs/demo/translation --out saved_models/translation",
    "translation translate --model saved_models/translation --beam-size 4",
]
TRANSLATION_INPUT = (
    "A man is riding a bike.\n"
    "Two dogs are playing in the snow.\n"
    "A woman in a red dress is walking down the street.\n"
)

STEPS: list[tuple[str, list[tuple[str, str | None]]]] = [
    ("sentiment analysis", [(c, SENTIMENT_INPUT if "predict" in c else None) for c in SENTIMENT]),
    ("language model and generation", [(c, None) for c in LANGUAGE_MODEL]),
    (
        "translation (English -> German)",
        [(c, TRANSLATION_INPUT if " translate " in c else None) for c in TRANSLATION],
    ),
]


def run(command: str, stdin: str | None) -> None:
    print(f"\n$ textrnn {command}" + ("  < (3 sentences on stdin)" if stdin else ""), flush=True)
    result = subprocess.run(TEXTRNN + shlex.split(command), cwd=ROOT, input=stdin, text=True)
    if result.returncode != 0:
        sys.exit(f"demo step failed (exit {result.returncode}): textrnn {command}")


def main() -> None:
    started = time.perf_counter()
    for title, steps in STEPS:
        print(f"\n=== {title} ===", flush=True)
        for command, stdin in steps:
            run(command, stdin)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
