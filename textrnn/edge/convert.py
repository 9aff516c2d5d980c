"""`export-litert`: a run's numeric signatures as one LiteRT file, versioned and atomic.

`export_litert(run_dir, out, ...)` writes `out/<N>/` (the next numeric version,
as `textrnn.export.export_run` does):

    model.tflite               the task's signatures (`Task.litert_functions`), built-in ops only
    textrnn.json               the manifest: task, signatures (names, shapes, dtypes),
                               special ids, tokenizers, quantization, file size, task settings
    vocab.txt, tokenizer.json  per tokenizer (translation: source/ and target/); tokenizer.json
                               holds the settings and the host tables (`edge.text_tables`)

Route: the functions go into a SavedModel in a temporary directory, then
`TFLiteConverter.from_saved_model(..., signature_keys)` with
`supported_ops = [TFLITE_BUILTINS]`, so anything needing the Flex delegate (which
ai-edge-litert cannot run) fails at conversion, with the ops named. A float32
file is then run in `ai_edge_litert` against the TensorFlow functions on sample
inputs; a difference over 1e-4 stops the export. Nothing is left behind by a
failure: the version appears by one rename at the end.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from textrnn import export, tasks
from textrnn.edge import manifest as manifest_lib
from textrnn.edge.text_tables import host_tokenizer_settings
from textrnn.errors import ConfigError
from textrnn.fileio import escape_token
from textrnn.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID

QUANTIZATIONS = ("none", "dynamic", "float16")
PARITY_TOLERANCE = 1e-4  # float32 file against the TensorFlow functions


def export_litert(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    expected_task: str | None = None,
    quantize: str = "none",
    max_length: int | None = None,
) -> Path:
    """Convert the run in `run_dir` and write it as the next version under `out`."""

    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if max_length is not None and max_length < 1:
        raise ConfigError(f"--max-length must be at least 1, got {max_length}")
    run_dir = Path(run_dir)
    entry = export.run_task_entry(run_dir, expected_task, "export-litert")
    task = entry.load()
    if task.litert_functions is None:
        raise ConfigError(f"the {entry.name} task has no LiteRT export")
    base = Path(out) if out else Path("litert_models") / entry.command
    parts = task.litert_functions(task.load_run(run_dir), max_length)
    tokenizers = {name: host_tokenizer_settings(t) for name, t in parts.tokenizers.items()}
    model_bytes = convert(parts, quantize)
    signatures = manifest_lib.describe_signatures(model_bytes)
    if quantize == "none":
        check_parity(parts.functions, model_bytes, signatures)
    # Only now, with the file converted, create --out: a failed export leaves nothing.
    with export.staging_directory(base, "litert") as tmp:
        tmp.mkdir()
        (tmp / manifest_lib.MODEL_FILE).write_bytes(model_bytes)
        files = write_tokenizers(tmp, parts.tokenizers, tokenizers)
        manifest = {
            "task": entry.name,
            "format": manifest_lib.FORMAT,
            "model_file": manifest_lib.MODEL_FILE,
            "file_size": len(model_bytes),
            "quantization": quantize,
            "signatures": signatures,
            "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID},
            "tokenizers": {
                name: {**files[name], **_without_tables(tokenizers[name])} for name in tokenizers
            },
            **parts.manifest,
        }
        manifest_text = json.dumps(manifest, indent=2) + "\n"
        (tmp / manifest_lib.MANIFEST_FILE).write_text(manifest_text, encoding="utf-8")
        return export.publish_version(tmp, base)


def convert(parts: tasks.LiteRTParts, quantize: str) -> bytes:
    """The functions as one LiteRT flatbuffer (built-in ops only), quantized as asked."""
    import keras

    archive = keras.export.ExportArchive()
    for resource in parts.resources:
        archive.track(resource)
    for name, function in parts.functions.items():
        archive.add_endpoint(name, function)
    with tempfile.TemporaryDirectory(prefix="textrnn-litert-") as directory:
        archive.write_out(directory, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            directory, signature_keys=list(parts.functions)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        try:
            return converter.convert()
        except Exception as error:  # noqa: BLE001 - the converter raises several kinds
            raise ConfigError(
                f"cannot convert to LiteRT with built-in ops only: {_ops(error)}"
            ) from None


def _ops(error: Exception) -> str:
    """The converter's complaint in one line: the ops it could not lower, if it names them."""
    text = str(error)
    ops = sorted(set(re.findall(r"'tf\.(\w+)'", text)) | set(re.findall(r"\bFlex(\w+)", text)))
    if ops:
        return f"no built-in kernel for {', '.join(ops)} (the Flex delegate is not available)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


def sample_inputs(details: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs for a signature: small ids, some padding, states in (-1, 1)."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for item in details["inputs"]:
        shape = [2 if size < 0 else size for size in item["shape_signature"]]
        if item["dtype"] == "int32":
            values = rng.integers(4, 8, size=shape).astype(np.int32)  # ids present in any vocab
            if len(shape) == 2 and shape[1] > 1:
                values[:, shape[1] // 2 :] = PAD_ID
            inputs[item["name"]] = values
        elif item["name"] == "mask":
            mask = np.ones(shape, np.float32)
            mask[..., shape[-1] // 2 + 1 :] = 0.0
            inputs[item["name"]] = mask
        else:
            inputs[item["name"]] = rng.uniform(-1, 1, size=shape).astype(np.float32)
    return inputs


def check_parity(
    functions: dict[str, Any], model_bytes: bytes, signatures: dict[str, Any]
) -> dict[str, float]:
    """Run every signature in ai_edge_litert and in TensorFlow; stop over the tolerance."""
    from textrnn.edge.runtime import open_interpreter

    interpreter = open_interpreter(model_bytes)
    worst = {}
    for name, details in signatures.items():
        inputs = sample_inputs(details)
        expected = functions[name](**{k: tf.constant(v) for k, v in inputs.items()})
        got = interpreter.get_signature_runner(name)(**inputs)
        worst[name] = max(
            float(np.max(np.abs(np.asarray(expected[key]) - got[key]), initial=0.0)) for key in got
        )
        if worst[name] > PARITY_TOLERANCE:
            raise ConfigError(
                f"the LiteRT file's {name} differs from the model by {worst[name]:.2g} "
                f"(tolerance {PARITY_TOLERANCE}); not exported"
            )
    return worst


def write_tokenizers(
    directory: Path, tokenizers: dict[str, Any], settings: dict[str, dict[str, Any]]
) -> dict[str, dict[str, str]]:
    """vocab.txt and tokenizer.json per tokenizer (in a subdirectory unless it is `text`)."""
    files = {}
    for name, tokenizer in tokenizers.items():
        folder = directory if name == "text" else directory / name
        folder.mkdir(exist_ok=True)
        prefix = "" if name == "text" else f"{name}/"
        vocabulary = "".join(escape_token(t) + "\n" for t in tokenizer.vocabulary)
        (folder / manifest_lib.VOCABULARY_FILE).write_text(vocabulary, encoding="utf-8")
        (folder / manifest_lib.TOKENIZER_FILE).write_text(
            json.dumps(settings[name], ensure_ascii=False) + "\n", encoding="utf-8"
        )
        files[name] = {
            "vocabulary": prefix + manifest_lib.VOCABULARY_FILE,
            "settings": prefix + manifest_lib.TOKENIZER_FILE,
        }
    return files


def _without_tables(settings: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if key != "host_tables"}
