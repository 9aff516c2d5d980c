"""`make demo`: train the bundled recipes, evaluate, export, and show outputs.

Every step is the CLI command a user would type, echoed before it runs, so
the demo doubles as a walk-through of the README. The commands run in this
one process through the Typer app (TensorFlow starts once, not once a
command); each keeps the CLI's contract, and the first that fails stops the
demo with one line naming it and its exit code.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typer.core import TyperGroup

ROOT = Path(__file__).resolve().parent.parent  # the recipes' paths are relative to it


@dataclass(frozen=True)
class Section:
    """One task's part of the demo: a title, what to expect, the commands to run."""

    title: str
    expect: str  # one line: the demo model's quality, and the recipe that gives the real figure
    commands: tuple[str, ...]  # `textrnn` arguments, shell-quoted as a user would type them


SENTIMENT = Section(
    "sentiment analysis",
    "demo model: ~10 s of training on 4,000 phrases, ~75% on 300 SST-2 dev sentences; "
    "tasks/sentiment/sst2.toml reaches 85.7% (docs/results.md)",
    (
        "sentiment train --config tasks/sentiment/config.toml --run-dir runs/demo/sentiment"
        " --restart",
        "sentiment evaluate --run-dir runs/demo/sentiment --data tasks/sentiment/data/dev.tsv",
        "sentiment export --run-dir runs/demo/sentiment --out saved_models/sentiment",
        "plot --run-dir runs/demo/sentiment --out runs/demo/sentiment/curves.png",
        "sentiment predict --model saved_models/sentiment"
        " 'a gorgeous , witty and moving film .'"
        " 'the plot is a mess and the jokes fall flat .'"
        " 'an often funny , sometimes moving film .'",
    ),
)

LANGUAGE_MODEL = Section(
    "language model and generation",
    "demo model: ~50 s on 500 kB of Shakespeare, ~1.80 nats/char: verse and names, some words "
    "misspelt; tasks/lm/shakespeare_char.toml reaches 1.37 in 15 min (docs/results.md)",
    (
        "lm train --config tasks/lm/config.toml --run-dir runs/demo/lm --restart",
        "lm evaluate --run-dir runs/demo/lm --data tasks/lm/data/valid.txt",
        "lm export --run-dir runs/demo/lm --out saved_models/lm",
        "plot --run-dir runs/demo/lm --out runs/demo/lm/curves.png",
        "generate --model saved_models/lm --prompt ROMEO: --max-tokens 300 --temperature 0.6"
        " --seed 1",
    ),
)

TRANSLATION = Section(
    "translation (English -> German)",
    "demo model: ~40 s on 5,144 short pairs, short sentences mostly right (~24 BLEU on 174); "
    "tasks/translation/multi30k.toml reaches 34.6 on all 1,014 (docs/results.md)",
    (
        "translation train --config tasks/translation/config.toml --run-dir runs/demo/translation"
        " --restart",
        "translation evaluate --run-dir runs/demo/translation"
        " --source tasks/translation/data/val.en --target tasks/translation/data/val.de",
        "translation export --run-dir runs/demo/translation --out saved_models/translation",
        "plot --run-dir runs/demo/translation --out runs/demo/translation/curves.png",
        "translation translate --model saved_models/translation --beam-size 4"
        " 'A man is riding a bike.'"
        " 'Two dogs are playing in the snow.'"
        " 'A woman in a red dress is walking down the street.'",
    ),
)

SECTIONS = (SENTIMENT, LANGUAGE_MODEL, TRANSLATION)


class StepFailedError(Exception):
    """A demo command exited with a non-zero code."""

    def __init__(self, command_line: str, code: int):
        super().__init__(f"demo step failed (exit {code}): textrnn {command_line}")
        self.code = code


def run(command: TyperGroup, command_line: str) -> None:
    """Run `textrnn <command_line>` in this process, as the console script would.

    Raises `StepFailedError` when the command exits with a non-zero code.
    """
    print(f"\n$ textrnn {command_line}", flush=True)
    try:
        # standalone_mode (the console script's): usage errors are printed as the
        # CLI prints them, and every outcome ends in SystemExit with its exit code.
        command.main(args=shlex.split(command_line), prog_name="textrnn", standalone_mode=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
        if not isinstance(code, int):  # None is success; a message is a failure
            if code is not None:
                print(code, file=sys.stderr)
            code = 0 if code is None else 1
    except Exception as error:  # noqa: BLE001 - commands report their own errors; never a traceback
        print(f"error: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        code = 1
    finally:
        sys.stdout.flush()
    if code:
        raise StepFailedError(command_line, code)


def main() -> None:
    started = time.perf_counter()
    os.chdir(ROOT)
    from typer.main import get_command

    from textrnn.cli.main import app  # sets up TensorFlow's environment before importing it

    command = get_command(app)
    try:
        for section in SECTIONS:
            print(f"\n=== {section.title} ===\n{section.expect}", flush=True)
            for command_line in section.commands:
                run(command, command_line)
    except StepFailedError as error:
        print(error, file=sys.stderr, flush=True)
        sys.exit(error.code)
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    print(
        f"\ndemo finished in {time.perf_counter() - started:.0f} s; training curves: "
        + ", ".join(f"runs/demo/{name}/curves.png" for name in ("sentiment", "lm", "translation")),
        flush=True,
    )


if __name__ == "__main__":
    main()
