"""`serving.codec` through the REST API: the JSON formats, bytes, multi-input signatures.

Also that the rows of a merged batch read as if each request had run alone.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from .helpers import (
    GENERATION_KNOBS,
    TEXTS,
    ServerProcess,
    lm_reference,
    predict,
    reference,
)


def test_predict_row_format_equals_in_process(
    server: ServerProcess, in_process: dict[int, Any]
) -> None:
    status, answer = predict(server, {"signature_name": "serving_default", "instances": TEXTS})
    assert status == 200, answer
    expected = reference(in_process, TEXTS)
    assert [row["label"] for row in answer["predictions"]] == [
        b.decode() for b in expected["label"]
    ]
    np.testing.assert_allclose(
        [row["probabilities"] for row in answer["predictions"]],
        expected["probabilities"],
        rtol=1e-6,
    )
    assert answer["predictions"][0]["classes"] == [b.decode() for b in expected["classes"][0]]
    # Named instances are the same request.
    status, named = predict(server, {"instances": [{"text": t} for t in TEXTS]})
    assert status == 200 and named == answer


def test_predict_columnar_format_equals_in_process(
    server: ServerProcess, in_process: dict[int, Any]
) -> None:
    status, answer = predict(server, {"inputs": {"text": TEXTS}})
    assert status == 200, answer
    outputs = answer["outputs"]
    expected = reference(in_process, TEXTS)
    assert set(outputs) == {"label", "probability", "probabilities", "classes"}
    assert outputs["label"] == [b.decode() for b in expected["label"]]
    np.testing.assert_allclose(outputs["probability"], expected["probability"], rtol=1e-6)
    status, bare = predict(server, {"inputs": TEXTS})  # a single input may be given bare
    assert status == 200 and bare == answer


def test_binary_string_inputs(server: ServerProcess) -> None:
    import base64

    encoded = {"b64": base64.b64encode(TEXTS[0].encode()).decode()}
    status, answer = predict(server, {"instances": [encoded]})
    assert status == 200
    assert answer == predict(server, {"instances": [TEXTS[0]]})[1]


@pytest.mark.slow
def test_language_model_generation_row_and_columnar(
    task_server: ServerProcess, lm_export: str, task_in_process: dict[Any, Any]
) -> None:
    prompts = ["the cat", "to be"]
    expected = lm_reference(task_in_process, "serving_default", prompt=prompts, **GENERATION_KNOBS)
    # Columnar: the knobs are scalars beside the batch of prompts.
    status, answer = predict(
        task_server, {"inputs": {"prompt": prompts, **GENERATION_KNOBS}}, model=lm_export
    )
    assert status == 200, answer
    assert answer["outputs"]["text"] == [t.decode() for t in expected["text"]]
    assert answer["outputs"]["num_tokens"] == expected["num_tokens"].tolist()
    # Row format: each instance repeats the (scalar) knobs.
    status, rows = predict(
        task_server,
        {"instances": [{"prompt": p, **GENERATION_KNOBS} for p in prompts]},
        model=lm_export,
    )
    assert status == 200, rows
    assert [r["text"] for r in rows["predictions"]] == answer["outputs"]["text"]
    # Knobs that differ between instances cannot be one scalar.
    status, error = predict(
        task_server,
        {
            "instances": [
                {"prompt": p, **GENERATION_KNOBS, "seed": i} for i, p in enumerate(prompts)
            ]
        },
        model=lm_export,
    )
    assert status == 400 and "'seed' is a scalar" in error["error"]
    status, error = predict(
        task_server,
        {"inputs": {"prompt": prompts, **GENERATION_KNOBS, "top_k": "one"}},
        model=lm_export,
    )
    assert status == 400 and "'top_k' expects int32" in error["error"]


@pytest.mark.slow
def test_language_model_score_signature(
    task_server: ServerProcess, lm_export: str, task_in_process: dict[Any, Any]
) -> None:
    texts = ["the cat sat", "to be or not"]
    status, answer = predict(
        task_server, {"signature_name": "score", "inputs": {"text": texts}}, model=lm_export
    )
    assert status == 200, answer
    expected = lm_reference(task_in_process, "score", text=texts)
    for key, value in expected.items():
        np.testing.assert_allclose(answer["outputs"][key], value, rtol=1e-5)


@pytest.mark.slow
def test_translation_row_and_columnar(
    task_server: ServerProcess, translation_export: str, task_in_process: dict[Any, Any]
) -> None:
    import tensorflow as tf

    sources = ["ein mann fährt rad .", "zwei hunde spielen ."]
    expected = {
        k: v.numpy()
        for k, v in task_in_process["translation"]
        .signatures["serving_default"](source=tf.constant(sources))
        .items()
    }
    status, rows = predict(task_server, {"instances": sources}, model=translation_export)
    assert status == 200, rows
    assert [r["translation"] for r in rows["predictions"]] == [
        t.decode() for t in expected["translation"]
    ]
    np.testing.assert_allclose(
        [r["score"] for r in rows["predictions"]], expected["score"], rtol=1e-5
    )
    knobs = {"beam_size": 2, "max_length": 6}
    status, columns = predict(
        task_server,
        {"signature_name": "translate", "inputs": {"source": sources, **knobs}},
        model=translation_export,
    )
    assert status == 200, columns
    reference_translate = task_in_process["translation"].signatures["translate"](
        source=tf.constant(sources),
        beam_size=tf.constant(2),
        max_length=tf.constant(6),
        no_repeat_ngram=tf.constant(0),  # what the server fills in (the recipe's)
        coverage_penalty=tf.constant(0.0),
    )
    assert columns["outputs"]["translation"] == [
        t.decode() for t in reference_translate["translation"].numpy()
    ]


def test_batch_shared_json_equals_per_request_json() -> None:
    """Merged requests convert the batch's outputs once; each slice must read as if alone."""
    from textrnn.serving.codec import BatchOutputs, outputs_json, predictions_json

    batch = {
        "label": np.array([b"pos", b"neg", b"\xff\xfe", "caf\u00e9".encode()], dtype=object),
        "probabilities": np.array(
            [[0.1, 0.9], [np.nan, np.inf], [0.5, 0.5], [1.0, 0.0]], np.float32
        ),
        "classes": np.array([[b"a", b"b"]] * 4, dtype=object),
        "ids": np.arange(12, dtype=np.int64).reshape(4, 3),
    }
    shared = BatchOutputs(batch)
    for start, end in [(0, 1), (1, 3), (3, 4), (0, 4)]:
        alone = {name: value[start:end] for name, value in batch.items()}
        piece = shared.rows(start, end)
        assert json.dumps(predictions_json(piece, end - start)) == json.dumps(
            predictions_json(alone, end - start)
        )
        assert json.dumps(outputs_json(piece)) == json.dumps(outputs_json(alone))
        np.testing.assert_array_equal(piece["ids"], alone["ids"])  # gRPC reads the arrays
    single = BatchOutputs({"probability": batch["probabilities"][:, 0]})
    assert json.dumps(predictions_json(single.rows(1, 3), 2)) == json.dumps(
        predictions_json({"probability": batch["probabilities"][1:3, 0]}, 2)
    )
