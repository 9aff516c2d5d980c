"""Console input and output of commands: texts from arguments or stdin, JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from textrnn.errors import UserError


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False))


def read_inputs(texts: list[str] | None, encoding: str = "utf-8") -> list[str]:
    """Texts from arguments, else lines on stdin (decoded with `encoding`, errors name the line)."""
    if texts:
        return list(texts)
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError("no input: pass texts as arguments or lines on stdin")
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(line.rstrip(b"\r").decode(encoding))
        except UnicodeDecodeError:
            raise UserError(
                f"stdin, line {number}: not valid {encoding} text; pass --encoding"
            ) from None
        except LookupError:
            raise UserError(f"unknown encoding {encoding!r} (--encoding)") from None
    return out
