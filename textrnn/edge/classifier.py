"""Text classification on the host: tokenize, pick a length bucket, `classify_<L>`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from textrnn.edge.runtime import EdgeExport
from textrnn.edge.text import PAD_ID


@dataclass
class EdgeClassifier:
    """A sentiment (text classification) LiteRT export.

    Example:

        classifier = EdgeClassifier(EdgeExport.open("litert_models/sentiment/1"))
        classifier.classify(["a gorgeous film"])[0]["label"]
    """

    export: EdgeExport

    def __post_init__(self) -> None:
        manifest = self.export.manifest
        self.labels: list[str] = list(manifest["labels"])
        self.max_length = int(manifest["max_length"])
        self.buckets: list[int] = sorted(int(b) for b in manifest["length_buckets"])
        self.tokenizer = self.export.tokenizers["text"]

    def token_ids(self, text: str) -> np.ndarray:
        """`[1, L]` ids right-padded to the smallest bucket that holds them (at least one)."""
        ids = self.tokenizer.tokenize(text, self.max_length)
        length = next(b for b in self.buckets if b >= max(len(ids), 1))
        padded = np.full([1, length], PAD_ID, np.int32)
        padded[0, : len(ids)] = ids
        return padded

    def probabilities(self, text: str) -> np.ndarray:
        ids = self.token_ids(text)
        return self.export.run(f"classify_{ids.shape[1]}", token_ids=ids)["probabilities"][0]

    def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        """Per text: `label`, `probability` and `probabilities` (label -> probability)."""
        results = []
        for text in texts:
            row = self.probabilities(text)
            best = int(np.argmax(row))
            results.append(
                {
                    "label": self.labels[best],
                    "probability": float(row[best]),
                    "probabilities": dict(zip(self.labels, map(float, row), strict=True)),
                }
            )
        return results
