"""`serving.rest`: status, metadata, routing, `:classify` and bad requests.

Every bad request is answered with TensorFlow Serving's status and a clear
message, and the server answers good requests afterwards.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from .helpers import (
    TEXTS,
    ServerProcess,
    http,
    predict,
    reference,
)


def test_status_lists_versions_highest_first(server: ServerProcess) -> None:
    status, answer = http(server, "GET", "/v1/models/sentiment")
    assert status == 200 and list(answer) == ["model_version_status"]
    # A version another test dropped in and removed stays listed, as END (test_registry.py).
    listed = answer["model_version_status"]
    assert [s["version"] for s in listed] == sorted((s["version"] for s in listed), key=int)[::-1]
    assert [s for s in listed if s["state"] != "END"] == [
        {
            "version": v,
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
        for v in ("2", "1")
    ]
    status, answer = http(server, "GET", "/v1/models/sentiment/versions/1")
    assert status == 200 and [s["version"] for s in answer["model_version_status"]] == ["1"]


def test_metadata_has_signature_defs(server: ServerProcess) -> None:
    status, answer = http(server, "GET", "/v1/models/sentiment/metadata")
    assert status == 200
    assert answer["model_spec"] == {"name": "sentiment", "signature_name": "", "version": "2"}
    signatures = answer["metadata"]["signature_def"]["signature_def"]
    default = signatures["serving_default"]
    assert default["inputs"]["text"]["dtype"] == "DT_STRING"
    assert default["inputs"]["text"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert {"label", "probability", "probabilities", "classes"} <= set(default["outputs"])
    assert set(signatures["classify"]["outputs"]) == {"classes", "scores"}
    status, answer = http(server, "GET", "/v1/models/sentiment/versions/1/metadata")
    assert status == 200 and answer["model_spec"]["version"] == "1"


def test_predict_specific_version_and_second_model(
    server: ServerProcess, in_process: dict[int, Any]
) -> None:
    status, answer = predict(server, {"inputs": {"text": TEXTS[:2]}}, version=1)
    assert status == 200
    np.testing.assert_allclose(
        answer["outputs"]["probabilities"],
        reference(in_process, TEXTS[:2], 1)["probabilities"],
        rtol=1e-6,
    )
    status, other = predict(server, {"inputs": {"text": TEXTS[:2]}}, model="classifier")
    assert status == 200 and other == answer


def test_classify_rest(server: ServerProcess, in_process: dict[int, Any]) -> None:
    status, answer = http(
        server,
        "POST",
        "/v1/models/sentiment:classify",
        {"signature_name": "classify", "examples": [{"text": t} for t in TEXTS]},
    )
    assert status == 200, answer
    expected = reference(in_process, TEXTS)
    for row, probabilities in zip(answer["result"], expected["probabilities"], strict=True):
        assert [label for label, _ in row] == [b.decode() for b in expected["classes"][0]]
        np.testing.assert_allclose([score for _, score in row], probabilities, rtol=1e-6)
    # Without signature_name the classify signature is used (a single example: another batch size,
    # so compare with a float tolerance).
    status, default = http(
        server, "POST", "/v1/models/sentiment:classify", {"examples": [{"text": TEXTS[0]}]}
    )
    assert status == 200
    assert [label for label, _ in default["result"][0]] == [
        label for label, _ in answer["result"][0]
    ]
    np.testing.assert_allclose(
        [score for _, score in default["result"][0]],
        [score for _, score in answer["result"][0]],
        rtol=1e-6,
    )


BAD_REQUESTS = [
    # (id, method, path, body (dict, or bytes sent raw), status, fragment of the error message)
    (
        "malformed-json",
        "POST",
        "/v1/models/sentiment:predict",
        b'{"instances": [',
        400,
        "JSON Parse error",
    ),
    (
        "not-an-object",
        "POST",
        "/v1/models/sentiment:predict",
        b'["a"]',
        400,
        "must be a JSON object",
    ),
    (
        "wrong-input-name",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": [{"txt": "a"}]},
        400,
        "unknown input(s) 'txt'",
    ),
    (
        "wrong-input-name-columnar",
        "POST",
        "/v1/models/sentiment:predict",
        {"inputs": {"txt": ["a"]}},
        400,
        "missing input(s) 'text'",
    ),
    (
        "wrong-type",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": [1, 2]},
        400,
        "expects strings, got int",
    ),
    (
        "wrong-nested-type",
        "POST",
        "/v1/models/sentiment:predict",
        {"inputs": {"text": [["a"], ["b"]]}},
        400,
        "expects shape string [-1]",
    ),
    (
        "ragged",
        "POST",
        "/v1/models/sentiment:predict",
        {"inputs": {"text": [["a"], ["b", "c"]]}},
        400,
        "ragged",
    ),
    ("empty-batch", "POST", "/v1/models/sentiment:predict", {"instances": []}, 400, "empty batch"),
    (
        "empty-batch-columnar",
        "POST",
        "/v1/models/sentiment:predict",
        {"inputs": {"text": []}},
        400,
        "empty batch",
    ),
    (
        "both-formats",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": ["a"], "inputs": ["a"]},
        400,
        "exactly one of 'instances'",
    ),
    (
        "unknown-signature",
        "POST",
        "/v1/models/sentiment:predict",
        {"signature_name": "nope", "instances": ["a"]},
        400,
        'Serving signature name: "nope" not found',
    ),
    (
        "too-many-instances",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": ["a"] * 65},
        400,
        "too many instances: 65 > 64",
    ),
    (
        "bad-base64",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": [{"b64": "!!"}]},
        400,
        "not valid base64",
    ),
    (
        "unknown-model",
        "POST",
        "/v1/models/nope:predict",
        {"instances": ["a"]},
        404,
        "Servable not found for request: Latest(nope)",
    ),
    (
        "unknown-version",
        "POST",
        "/v1/models/sentiment/versions/7:predict",
        {"instances": ["a"]},
        404,
        "Servable not found for request: Specific(sentiment, 7)",
    ),
    (
        "unknown-model-status",
        "GET",
        "/v1/models/nope",
        None,
        404,
        "Could not find any versions of model nope",
    ),
    (
        "unknown-version-status",
        "GET",
        "/v1/models/sentiment/versions/7",
        None,
        404,
        "Could not find version 7",
    ),
    (
        "non-numeric-version",
        "GET",
        "/v1/models/sentiment/versions/x1",
        None,
        400,
        "Failed to convert version",
    ),
    (
        "traversal-encoded",
        "POST",
        "/v1/models/..%2F..%2Fetc%2Fpasswd:predict",
        {"instances": ["a"]},
        400,
        "invalid model name '../../etc/passwd'",
    ),
    ("traversal-dots", "GET", "/v1/models/../versions/1", None, 400, "invalid model name '..'"),
    (
        "traversal-metadata",
        "GET",
        "/v1/models/..%2Fsentiment/metadata",
        None,
        400,
        "invalid model name",
    ),
    (
        "symlink-outside-base",
        "GET",
        "/v1/models/escape",
        None,
        404,
        "Could not find any versions of model escape",
    ),
    (
        "malformed-path",
        "POST",
        "/v1/models/sentiment:explode",
        {"instances": ["a"]},
        400,
        "Malformed request",
    ),
    ("no-model-name", "GET", "/v1/models", None, 400, "Missing model name"),
    ("not-the-api", "GET", "/etc/passwd", None, 404, "no such endpoint"),
    (
        "regress",
        "POST",
        "/v1/models/sentiment:regress",
        {"examples": [{"text": "a"}]},
        501,
        "no regression",
    ),
    (
        "classify-not-a-list",
        "POST",
        "/v1/models/sentiment:classify",
        {"examples": "a"},
        400,
        "needs 'examples'",
    ),
    (
        "lone-surrogate",
        "POST",
        "/v1/models/sentiment:predict",
        {"instances": ["ok", "\ud800"]},
        400,
        "lone UTF-16 surrogate",
    ),
    (
        "lone-surrogate-columnar",
        "POST",
        "/v1/models/sentiment:predict",
        {"inputs": {"text": ["\udfff"]}},
        400,
        "lone UTF-16 surrogate",
    ),
    (
        "classify-lone-surrogate",
        "POST",
        "/v1/models/sentiment:classify",
        {"examples": [{"text": "\ud800"}]},
        400,
        "lone UTF-16 surrogate",
    ),
    (
        "classify-missing-feature",
        "POST",
        "/v1/models/sentiment:classify",
        {"examples": [{"zzz": "a"}]},
        400,
        "text",
    ),
    (
        "classify-wrong-feature-type",
        "POST",
        "/v1/models/sentiment:classify",
        {"examples": [{"text": 5}]},
        400,
        "text",
    ),
    (
        "unknown-signature-with-a-surrogate",
        "POST",
        "/v1/models/sentiment:predict",
        {"signature_name": "\ud800", "instances": ["a"]},
        400,
        "\ud800",
    ),
    (
        "classify-on-predict-signature",
        "POST",
        "/v1/models/sentiment:classify",
        {"signature_name": "nope", "examples": [{"text": "a"}]},
        400,
        "not found in signature def",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_is_answered_and_server_survives(
    server: ServerProcess, method: str, path: str, body: Any, status: int, message: str
) -> None:
    got, answer = http(
        server,
        method,
        path,
        raw=body if isinstance(body, bytes) else None,
        body=None if isinstance(body, bytes) else body,
    )
    assert got == status, answer
    assert set(answer) == {"error"} and message in answer["error"], answer


def test_many_bad_requests_in_a_row_leave_good_ones_working(server: ServerProcess) -> None:
    def one(index: int) -> int:
        if index % 2:
            return http(server, "POST", "/v1/models/sentiment:predict", raw=b"{nope")[0]
        return predict(server, {"instances": [TEXTS[index % len(TEXTS)]]})[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(40)))
    assert statuses == [200 if i % 2 == 0 else 400 for i in range(40)]
