"""Opening a LiteRT export on the host: interpreter, manifest, tokenizers, signatures.

    export = EdgeExport.open("litert_models/lm/1")   # a version or a base directory
    export.run("step", token_ids=..., states=...)    # numpy in, numpy out
    export.tokenizers["text"].tokenize("ROMEO:")

Imports numpy, `ai_edge_litert` and the standard library only: no TensorFlow.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textrnn.edge import manifest as manifest_lib
from textrnn.edge.text import HostTokenizer, read_vocabulary
from textrnn.errors import ModelPathError, UserError

INSTALL_HINT = "pip install 'textrnn[edge]' (the ai-edge-litert package)"


def open_interpreter(model: bytes | str | os.PathLike, num_threads: int | None = None):
    """An `ai_edge_litert` interpreter over a file's bytes or path, tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError(f"running a LiteRT model needs ai-edge-litert: {INSTALL_HINT}") from None
    if isinstance(model, bytes):
        interpreter = Interpreter(model_content=model, num_threads=num_threads)
    else:
        interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def litert_version_directory(path: str | os.PathLike) -> Path | None:
    """`path` if it is a LiteRT version, else its highest numeric LiteRT version, else None."""
    path = Path(path)
    if manifest_lib.is_litert_export(path):
        return path
    if not path.is_dir():
        return None
    versions = sorted(
        (int(child.name), child)
        for child in path.iterdir()
        if child.is_dir() and re.fullmatch(r"\d+", child.name)
    )
    complete = [child for _, child in versions if manifest_lib.is_litert_export(child)]
    return complete[-1] if complete else None


@dataclass
class EdgeExport:
    """A loaded LiteRT export: its manifest, host tokenizers and signature runners."""

    path: Path
    manifest: dict[str, Any]
    tokenizers: dict[str, HostTokenizer]
    interpreter: Any
    runners: dict[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike, num_threads: int | None = None) -> EdgeExport:
        resolved = litert_version_directory(path)
        if resolved is None:
            raise ModelPathError(
                f"{path}: no LiteRT export ({manifest_lib.MODEL_FILE} and "
                f"{manifest_lib.MANIFEST_FILE}) there or in a numeric version below it"
            )
        try:
            manifest = manifest_lib.read_manifest(resolved)
            tokenizers = {
                name: _read_tokenizer(resolved, files)
                for name, files in manifest["tokenizers"].items()
            }
        except (OSError, ValueError, KeyError) as error:
            raise ModelPathError(f"{resolved}: corrupt LiteRT export ({error})") from None
        try:
            interpreter = open_interpreter(resolved / manifest_lib.MODEL_FILE, num_threads)
        except (ValueError, RuntimeError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelPathError(
                f"{resolved}: cannot load {manifest_lib.MODEL_FILE} ({first})"
            ) from None
        runners = {
            name: interpreter.get_signature_runner(name)
            for name in interpreter.get_signature_list()
        }
        return cls(resolved, manifest, tokenizers, interpreter, runners)

    @property
    def task(self) -> str:
        return self.manifest.get("task", "")

    def run(self, signature: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Call a signature with numpy inputs; the outputs are fresh arrays."""
        outputs = self.runners[signature](**inputs)
        return {key: np.array(value) for key, value in outputs.items()}


def _read_tokenizer(directory: Path, files: dict[str, str]) -> HostTokenizer:
    import json

    settings = json.loads((directory / files["settings"]).read_text(encoding="utf-8"))
    vocabulary = read_vocabulary((directory / files["vocabulary"]).read_text(encoding="utf-8"))
    return HostTokenizer(settings, vocabulary)
