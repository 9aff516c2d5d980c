"""The host runtime in a fresh process: no TensorFlow imported, the same answers."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import SUBPROCESS_TIMEOUT, subprocess_env
from textrnn.edge.classifier import EdgeClassifier
from textrnn.edge.generator import EdgeLanguageModel, SamplingOptions
from textrnn.edge.runtime import EdgeExport
from textrnn.edge.translator import EdgeTranslator

CHILD = """
import json, sys
from textrnn.edge.classifier import EdgeClassifier
from textrnn.edge.generator import EdgeLanguageModel, SamplingOptions
from textrnn.edge.runtime import EdgeExport
from textrnn.edge.serving import litert_signatures
from textrnn.edge.translator import EdgeTranslator

sentiment, lm, translation = sys.argv[1:4]
answers = {
    "sentiment": EdgeClassifier(EdgeExport.open(sentiment)).classify(["a good film"])[0],
    "lm": EdgeLanguageModel(EdgeExport.open(lm)).generate(
        "the", SamplingOptions(max_tokens=20, temperature=0.8, top_k=4, seed=5)
    ),
    "translation": EdgeTranslator(EdgeExport.open(translation)).translate(
        "the dog runs", beam_size=3
    ).translation,
}
litert_signatures(sentiment)
answers["tensorflow"] = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
print(json.dumps(answers))
"""


def test_runtime_runs_without_tensorflow(litert_sentiment, litert_lm, litert_translation):
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(litert_sentiment),
            str(litert_lm),
            str(litert_translation),
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=SUBPROCESS_TIMEOUT,
        check=True,
    )
    answers = json.loads(completed.stdout.strip().splitlines()[-1])
    assert answers["tensorflow"] == []
    assert (
        answers["sentiment"]
        == EdgeClassifier(EdgeExport.open(litert_sentiment)).classify(["a good film"])[0]
    )
    options = SamplingOptions(max_tokens=20, temperature=0.8, top_k=4, seed=5)
    assert answers["lm"] == EdgeLanguageModel(EdgeExport.open(litert_lm)).generate("the", options)
    translator = EdgeTranslator(EdgeExport.open(litert_translation))
    assert answers["translation"] == translator.translate("the dog runs", beam_size=3).translation


def test_manifest_describes_the_file(litert_lm):
    export = EdgeExport.open(litert_lm.parent)  # the base directory: its highest version
    manifest = export.manifest
    assert export.path == litert_lm
    assert manifest["task"] == "language_model" and manifest["quantization"] == "none"
    assert manifest["file_size"] == (litert_lm / "model.tflite").stat().st_size
    assert set(manifest["signatures"]) == {"step", "prime"}
    prime = {t["name"]: t for t in manifest["signatures"]["prime"]["inputs"]}
    assert prime["token_ids"]["shape"] == [1, 8] and prime["token_ids"]["dtype"] == "int32"
    assert manifest["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert manifest["tokenizers"]["text"]["vocabulary"] == "vocab.txt"
    assert "host_tables" not in manifest["tokenizers"]["text"]
