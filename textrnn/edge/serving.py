"""A LiteRT export behind the SavedModel's signature names, for the existing commands.

`textrnn.export.load_serving` calls `litert_signatures(path)` when `--model` is a
LiteRT export, so `sentiment predict`, `generate [--stream]` and `translation
translate` run it unchanged: each signature takes the SavedModel signature's
keyword arguments (tensors or arrays) and returns arrays with a `.numpy()`
method, computed by the host runtime (`EdgeClassifier`, `EdgeLanguageModel`,
`EdgeTranslator`). Imports numpy, ai_edge_litert and the standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from textrnn.edge.classifier import EdgeClassifier
from textrnn.edge.generator import EdgeLanguageModel, SamplingOptions
from textrnn.edge.runtime import EdgeExport
from textrnn.edge.search import NEGATIVE
from textrnn.edge.text import PAD, PAD_ID, UNK_ID
from textrnn.edge.translator import EdgeTranslator
from textrnn.errors import ConfigError


class HostArray(np.ndarray):
    """A numpy array that answers `.numpy()` like an eager tensor."""

    def numpy(self) -> np.ndarray:
        return np.asarray(self)


def _array(values: Any, dtype: Any = None) -> HostArray:
    return np.asarray(values, dtype=dtype).view(HostArray)


def _texts(values: Any) -> list[str]:
    return [
        v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
        for v in np.asarray(values).reshape(-1).tolist()
    ]


def _strings(texts: list[str] | list[list[str]]) -> HostArray:
    encoded = np.vectorize(lambda t: t.encode("utf-8"), otypes=[object])(np.asarray(texts, object))
    return encoded.view(HostArray)


def litert_signatures(path) -> tuple[EdgeExport, dict[str, Callable[..., dict]], dict[str, Any]]:
    """(loaded export, signature name -> callable, manifest in the SavedModel's keys)."""
    export = EdgeExport.open(path)
    build = {
        "sentiment": _classification,
        "language_model": _generation,
        "translation": _translation,
    }.get(export.task)
    if build is None:
        raise ConfigError(f"{export.path}: unknown task {export.task!r} in its manifest")
    signatures, extra = build(export)
    return export, signatures, {**export.manifest, **extra}


def _classification(export: EdgeExport):
    classifier = EdgeClassifier(export)

    def serve(text) -> dict[str, HostArray]:
        rows = [classifier.probabilities(t) for t in _texts(text)]
        probabilities = np.reshape(np.asarray(rows, np.float32), [-1, len(classifier.labels)])
        best = np.argmax(probabilities, axis=-1)
        return {
            "label": _strings([classifier.labels[i] for i in best]),
            "probability": _array(probabilities.max(axis=-1, initial=0.0)),
            "probabilities": _array(probabilities),
            "classes": _strings([classifier.labels] * len(rows)),
        }

    return {"serving_default": serve}, {"tokenizer": export.manifest["tokenizers"]["text"]}


def _generation(export: EdgeExport):
    lm = EdgeLanguageModel(export)
    tokenizer = lm.tokenizer

    def generate(prompt, max_tokens, temperature, top_k, top_p, seed) -> dict[str, HostArray]:
        options = SamplingOptions(
            int(max_tokens), float(temperature), int(top_k), float(top_p), int(seed)
        )
        ids = [lm.generate_ids(p, options, row=r) for r, p in enumerate(_texts(prompt))]
        return {
            "text": _strings([tokenizer.detokenize(i) for i in ids]),
            "num_tokens": _array([len(i) for i in ids], np.int32),
        }

    def tokenize(text) -> dict[str, HostArray]:
        rows = [lm.prompt_ids(t) for t in _texts(text)]
        width = max((len(r) for r in rows), default=0)
        ids = np.full([len(rows), width], PAD_ID, np.int32)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = row
        return {
            "token_ids": _array(ids),
            "lengths": _array([len(r) for r in rows], np.int32),
            "unknown": _array([sum(i == UNK_ID for i in r) for r in rows], np.int32),
            "initial_states": _array(lm.zero_states(len(rows))),
        }

    def step(token_ids, states) -> dict[str, HostArray]:
        logits, new_states = lm.step(np.asarray(token_ids), np.asarray(states, np.float32))
        return {"logits": _array(logits), "states": _array(new_states)}

    def detokenize(token_ids) -> dict[str, HostArray]:
        rows = np.asarray(token_ids).reshape(len(np.asarray(token_ids)), -1)
        return {"text": _strings([tokenizer.detokenize(row.tolist()) for row in rows])}

    signatures = {"generate": generate, "serving_default": generate, "tokenize": tokenize}
    signatures.update({"step": step, "detokenize": detokenize})
    extra = {"tokenizer": export.manifest["tokenizers"]["text"], "max_tokens_cap": 10000}
    return signatures, extra


def _translation(export: EdgeExport):
    translator = EdgeTranslator(export)

    def translate(source, beam_size=None, max_length=0, **options) -> dict[str, HostArray]:
        n_best = int(options.pop("n_best", 1))
        if options:
            raise ConfigError(
                f"a LiteRT export does not take {', '.join(sorted(options))}; "
                "pass --model RUN_DIR or a SavedModel"
            )
        beam = None if beam_size is None else int(beam_size)
        results = [
            translator.translate(t, beam, int(max_length), n_best=n_best) for t in _texts(source)
        ]
        return _translation_outputs(translator, results, beam or translator.decoding["beam_size"])

    def serve(source) -> dict[str, HostArray]:
        outputs = translate(source)
        return {"translation": outputs["translation"], "score": outputs["score"]}

    manifest = export.manifest
    extra = {
        "source_tokenizer": manifest["tokenizers"]["source"],
        "target_tokenizer": manifest["tokenizers"]["target"],
    }
    return {"serving_default": serve, "translate": translate}, extra


def _translation_outputs(translator: EdgeTranslator, results, beam: int) -> dict[str, HostArray]:
    """The SavedModel `translate` signature's outputs, padded to rectangles."""
    count, source_length = len(results), translator.source_length
    time = max((len(r.target_ids) for r in results), default=0)
    hypotheses = [[""] * beam for _ in results]
    scores = np.full([count, beam], NEGATIVE, np.float32)
    attention = np.zeros([count, time, source_length], np.float32)
    target_tokens = [[PAD] * time for _ in results]
    source_tokens = [[PAD] * source_length for _ in results]
    for row, result in enumerate(results):
        for k, (text, score) in enumerate(result.hypotheses[:beam]):
            hypotheses[row][k], scores[row, k] = text, score
        if result.attention is not None:
            attention[row, : len(result.attention), : result.attention.shape[1]] = result.attention
        for t, token_id in enumerate(result.target_ids):
            target_tokens[row][t] = translator.target_tokenizer.token(token_id)
        source_tokens[row][: len(result.source_tokens)] = result.source_tokens
    return {
        "translation": _strings([r.translation for r in results]),
        "score": _array([r.score for r in results], np.float32),
        "hypotheses": _strings(hypotheses),
        "hypothesis_scores": _array(scores),
        "attention": _array(attention),
        "source_tokens": _strings(source_tokens),
        "target_tokens": _strings(target_tokens),
        "target_lengths": _array([len(r.target_ids) for r in results], np.int32),
        "capped": _array([r.capped for r in results], bool),
    }
