"""The LiteRT export's layout: file names, the manifest, signature descriptions.

Host side: imports numpy, ai_edge_litert and the standard library only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FORMAT = "litert"
MODEL_FILE = "model.tflite"
MANIFEST_FILE = "textrnn.json"
VOCABULARY_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"


def is_litert_export(path: str | os.PathLike) -> bool:
    """A LiteRT version directory: model.tflite beside its manifest."""
    path = Path(path)
    return (path / MODEL_FILE).is_file() and (path / MANIFEST_FILE).is_file()


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(path) / MANIFEST_FILE).read_text(encoding="utf-8"))


def describe_signatures(model_bytes: bytes) -> dict[str, Any]:
    """Signature name -> inputs and outputs (name, shape, shape_signature, dtype)."""
    from textrnn.edge.runtime import open_interpreter

    interpreter = open_interpreter(model_bytes)
    described = {}
    for name in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(name)
        described[name] = {
            "inputs": _tensors(runner.get_input_details()),
            "outputs": _tensors(runner.get_output_details()),
        }
    return described


def _tensors(details: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "shape": [int(s) for s in item["shape"]],
            "shape_signature": [int(s) for s in item["shape_signature"]],
            "dtype": item["dtype"].__name__,
        }
        for name, item in sorted(details.items())
    ]
