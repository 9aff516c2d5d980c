"""`serving.grpc_api`: PredictionService and ModelService through real gRPC stubs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from .helpers import (
    GENERATION_KNOBS,
    TEXTS,
    lm_reference,
    predict_request,
    reference,
)


def test_grpc_predict_equals_in_process(grpc_stubs: Any, in_process: dict[int, Any]) -> None:
    import tensorflow as tf

    prediction, _ = grpc_stubs
    response = prediction.Predict(predict_request(TEXTS), timeout=30)
    assert response.model_spec.name == "sentiment" and response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    outputs = {key: tf.make_ndarray(value) for key, value in response.outputs.items()}
    expected = reference(in_process, TEXTS)
    assert list(outputs["label"]) == list(expected["label"])
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)
    filtered = prediction.Predict(predict_request(TEXTS[:1], version=1), timeout=30)
    assert filtered.model_spec.version.value == 1


def test_grpc_output_filter(grpc_stubs: Any) -> None:
    prediction, _ = grpc_stubs
    request = predict_request(TEXTS[:1])
    request.output_filter.append("label")
    assert set(prediction.Predict(request, timeout=30).outputs) == {"label"}


def test_grpc_metadata_and_status(grpc_stubs: Any) -> None:
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    prediction, model_service = grpc_stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "sentiment"
    response = prediction.GetModelMetadata(request, timeout=30)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_defs)
    assert {"serving_default", "classify"} <= set(signature_defs.signature_def)
    assert response.model_spec.version.value == 2
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "sentiment"
    statuses = model_service.GetModelStatus(status_request, timeout=30).model_version_status
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [s.version for s in statuses if s.state == available] == [2, 1]
    import grpc

    status_request.model_spec.version_label = "stable"  # refused, as Predict refuses it
    with pytest.raises(grpc.RpcError) as raised:
        model_service.GetModelStatus(status_request, timeout=30)
    assert raised.value.code().name == "UNIMPLEMENTED"


def test_grpc_classify(grpc_stubs: Any, in_process: dict[int, Any]) -> None:
    from tensorflow_serving.apis import classification_pb2

    prediction, _ = grpc_stubs
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "sentiment"
    request.model_spec.signature_name = "classify"
    for text in TEXTS:
        example = request.input.example_list.examples.add()
        example.features.feature["text"].bytes_list.value.append(text.encode())
    response = prediction.Classify(request, timeout=30)
    expected = reference(in_process, TEXTS)
    scores = [[c.score for c in row.classes] for row in response.result.classifications]
    np.testing.assert_allclose(scores, expected["probabilities"], rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"model": "nope"}, "NOT_FOUND", "Servable not found for request: Latest(nope)"),
        ({"version": 9}, "NOT_FOUND", "Specific(sentiment, 9)"),
        ({"model": "../etc"}, "INVALID_ARGUMENT", "invalid model name"),
        ({"name": "txt"}, "INVALID_ARGUMENT", "unknown input(s) 'txt'"),
        ({"texts": [1.5]}, "INVALID_ARGUMENT", "expects string, got float32"),
        ({"texts": [["a"]]}, "INVALID_ARGUMENT", "expects shape string [-1]"),
        ({"texts": np.array([], dtype=object)}, "INVALID_ARGUMENT", "empty batch"),
        ({"signature": "nope"}, "INVALID_ARGUMENT", 'Serving signature name: "nope" not found'),
        ({"no_strings": True}, "INVALID_ARGUMENT", "holds no string_val"),
    ],
    ids=[
        "unknown-model",
        "unknown-version",
        "traversal",
        "wrong-name",
        "wrong-type",
        "wrong-shape",
        "empty",
        "signature",
        "string-tensor-without-strings",
    ],
)
def test_grpc_errors(grpc_stubs: Any, kwargs: dict[str, Any], code: str, message: str) -> None:
    import grpc

    prediction, _ = grpc_stubs
    texts = kwargs.pop("texts", ["a"])
    request = predict_request(texts, **{k: v for k, v in kwargs.items() if k != "no_strings"})
    if kwargs.get("no_strings"):  # DT_STRING, shape [1], but a float where the string belongs
        del request.inputs["text"].string_val[:]
        request.inputs["text"].float_val.append(1.0)
    with pytest.raises(grpc.RpcError) as raised:
        prediction.Predict(request, timeout=30)
    assert raised.value.code().name == code
    assert message in raised.value.details()
    assert prediction.Predict(predict_request(["still alive"]), timeout=30).outputs["label"]


@pytest.mark.slow
def test_language_model_over_grpc(
    task_grpc: Any, lm_export: str, task_in_process: dict[Any, Any]
) -> None:
    import tensorflow as tf

    prediction, _ = task_grpc
    request = predict_request(["the cat"], model=lm_export, name="prompt")
    for key, value in GENERATION_KNOBS.items():
        dtype = {"max_tokens": tf.int32, "top_k": tf.int32, "seed": tf.int64}.get(key, tf.float32)
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    response = prediction.Predict(request, timeout=60)
    expected = lm_reference(
        task_in_process, "serving_default", prompt=["the cat"], **GENERATION_KNOBS
    )
    assert list(tf.make_ndarray(response.outputs["text"])) == list(expected["text"])
