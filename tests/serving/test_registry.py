"""`serving.registry`: models and versions found on disk, warmed up, kept current."""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any

import numpy as np

from .helpers import (
    TEXTS,
    Exports,
    ServerProcess,
    http,
    predict,
    reference,
)


def test_startup_loads_every_model_and_replays_warmup(
    server: ServerProcess, exports: Exports
) -> None:
    text = "\n".join(server.lines)
    expected = [("sentiment", 1), ("sentiment", 2), ("classifier", 1)]
    expected += [(task, 1) for task in exports.tasks]
    for name, version in expected:
        assert re.search(
            rf"model {name} version {version}: loaded .* [1-9]\d* warm-up request\(s\) replayed",
            text,
        ), text
    assert "escape" not in re.findall(r"model (\S+) version", text)


def test_version_dropped_in_is_served_without_restart(
    server: ServerProcess, in_process: dict[int, Any]
) -> None:
    model = server.base / "sentiment"
    staging = server.base / ".staging-3"  # outside any model directory's version list until renamed
    shutil.copytree(model / "1", staging)
    os.rename(staging, model / "3")  # atomic, as `textrnn sentiment export` does
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, answer = http(server, "GET", "/v1/models/sentiment/metadata")
            if answer.get("model_spec", {}).get("version") == "3":
                break
            time.sleep(0.2)
        assert answer["model_spec"]["version"] == "3", answer
        status, answer = predict(
            server, {"inputs": {"text": TEXTS[:2]}}
        )  # default: the highest version
        assert status == 200
        np.testing.assert_allclose(
            answer["outputs"]["probabilities"],
            reference(in_process, TEXTS[:2], 1)["probabilities"],
            rtol=1e-6,
        )
        status, answer = http(server, "GET", "/v1/models/sentiment")
        assert [s["version"] for s in answer["model_version_status"]] == ["3", "2", "1"]
    finally:
        shutil.rmtree(model / "3")
    deadline = time.monotonic() + 20
    while (
        time.monotonic() < deadline and predict(server, {"instances": ["a"]}, version=3)[0] != 404
    ):
        time.sleep(0.2)
    assert predict(server, {"instances": ["a"]}, version=3)[0] == 404
    assert http(server, "GET", "/v1/models/sentiment/metadata")[1]["model_spec"]["version"] == "2"
    # Like TensorFlow Serving, an unloaded version stays in the status as END.
    states = {
        s["version"]: s["state"]
        for s in http(server, "GET", "/v1/models/sentiment")[1]["model_version_status"]
    }
    assert states == {"3": "END", "2": "AVAILABLE", "1": "AVAILABLE"}


def test_single_model_directory_is_served_under_its_name(exports: Exports) -> None:
    from textrnn.serving import Registry, ServerOptions

    options = ServerOptions(model_base_path=exports.base / "sentiment", poll_seconds=0)
    registry = Registry(options, executor=None)  # type: ignore[arg-type]
    assert registry.discover() == {"sentiment": exports.base / "sentiment"}
