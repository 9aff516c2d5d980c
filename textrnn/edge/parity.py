"""Tokenizer parity: the host tokenizer against the in-graph one, line by line.

`check_tokenizers(run_dir, data_path)` runs every tokenizer of a run (one for
sentiment and language models, source and target for translation) over every
line of a file, in the graph (`Tokenizer.tokenize`) and on the host
(`HostTokenizer.tokenize`, with the tables an export would carry), and reports
the lines whose ids differ. Behind `textrnn <task> check-tokenizer` and the
corpus tests. Imports TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from textrnn.data import read_lines
from textrnn.edge.text import HostTokenizer
from textrnn.edge.text_tables import host_tokenizer_settings
from textrnn.errors import RunDirError
from textrnn.tokenizers import SETTINGS_FILE, Tokenizer, encode_rows


@dataclass
class ParityReport:
    """One tokenizer over one file: counts and the first mismatching lines."""

    name: str
    lines: int = 0
    tokens: int = 0
    mismatches: int = 0
    examples: list[tuple[int, list[int], list[int]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def summary(self) -> str:
        verdict = "identical" if self.ok else f"{self.mismatches} line(s) differ"
        return f"{self.name}: {self.lines} lines, {self.tokens} tokens: {verdict}"


def tokenizer_directories(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Name -> directory of each tokenizer in a run (`text`, or `source` / `target`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir} (--run-dir)")
    found = {}
    if (run_dir / SETTINGS_FILE).is_file():
        found["text"] = run_dir
    for child in sorted(run_dir.iterdir()):
        if child.is_dir() and (child / SETTINGS_FILE).is_file():
            found[child.name] = child
    if not found:
        raise RunDirError(f"{run_dir}: no tokenizer ({SETTINGS_FILE}); is this a run directory?")
    return found


def host_twin(tokenizer: Tokenizer) -> HostTokenizer:
    """The host tokenizer an export of `tokenizer` would carry."""
    return HostTokenizer(host_tokenizer_settings(tokenizer), list(tokenizer.vocabulary))


def compare(
    name: str, tokenizer: Tokenizer, lines: list[str], max_examples: int = 5
) -> ParityReport:
    """Graph ids against host ids for every line."""
    host = host_twin(tokenizer)
    report = ParityReport(name, lines=len(lines))
    for number, (graph_ids, line) in enumerate(
        zip(encode_rows(tokenizer, lines), lines, strict=True), 1
    ):
        expected = [int(i) for i in graph_ids]
        got = host.tokenize(line)
        report.tokens += len(expected)
        if got != expected:
            report.mismatches += 1
            if len(report.examples) < max_examples:
                report.examples.append((number, expected, got))
    return report


def check_tokenizers(
    run_dir: str | os.PathLike, data_path: str | os.PathLike, encoding: str = "utf-8"
) -> list[ParityReport]:
    """Every tokenizer of the run over every line of `data_path`."""
    lines = read_lines(data_path, encoding, "--data")
    return [
        compare(name, Tokenizer.load(directory), lines)
        for name, directory in tokenizer_directories(run_dir).items()
    ]
