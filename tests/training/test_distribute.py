"""Scale-out, every task: static shapes + XLA, bfloat16, mirrored and multi-worker runs."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import (
    PYTHON,
    REPO,
    SUBPROCESS_TIMEOUT,
    sentiment_rows,
    subprocess_env,
    tiny_config,
    tiny_train_command,
    write_tsv,
)
from textrnn import sentiment, tasks
from textrnn.training.fit import train

# ----------------------------------------------------------------------------- static shapes + XLA


def _assert_fully_defined(dataset):
    for spec in tf.nest.flatten(dataset.element_spec):
        assert spec.shape.is_fully_defined(), dataset.element_spec


def _sentiment_config(tmp_path, **extra):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(24))
    return tiny_config(
        train, **{"training.static_shapes": True, "training.jit_compile": "true", **extra}
    )


def _lm_config(tmp_path, **extra):
    from textrnn.config import load_config
    from textrnn.language_model.config import LanguageModelConfig

    path = tmp_path / "lm.txt"
    path.write_text("the cat sat on the mat.\nto be or not to be.\n" * 20, encoding="utf-8")
    return load_config(
        LanguageModelConfig,
        None,
        {
            "data.train": str(path),
            "data.seq_len": 8,
            "model.embedding_dim": 8,
            "model.stack.units": 8,
            "training.epochs": 1,
            "training.batch_size": 4,
            "training.seed": 3,
            "training.static_shapes": True,
            "training.jit_compile": "true",
            **extra,
        },
    )


def _translation_config(tmp_path, **extra):
    from translation.tiny import tiny_translation_config

    return tiny_translation_config(
        tmp_path, **{"training.static_shapes": True, "training.jit_compile": "true", **extra}
    )


@pytest.mark.parametrize(
    "task_name, make_config, extra",
    [
        ("sentiment", _sentiment_config, {}),
        ("language_model", _lm_config, {}),
        ("language_model", _lm_config, {"data.layout": "lines"}),
        ("language_model", _lm_config, {"data.carry_state": True}),
        ("translation", _translation_config, {"model.input_feeding": False}),
        ("translation", _translation_config, {"model.input_feeding": True}),
    ],
)
def test_static_shapes_give_fixed_batches_and_train_with_xla(
    tmp_path, task_name, make_config, extra
):
    task = tasks.find(task_name).load()
    config = make_config(tmp_path) if extra is None else make_config(tmp_path, **extra)
    datasets = task.load_datasets(config, tmp_path / "probe")
    _assert_fully_defined(datasets.train)
    _assert_fully_defined(datasets.valid)
    for x, _ in datasets.train.take(2):
        first = tf.nest.flatten(x)[0]
        assert first.shape[0] == config.training.batch_size  # drop_remainder: every batch is full

    built = {}
    original = task.build_model

    def record(*args, **kwargs):
        built["model"] = original(*args, **kwargs)
        return built["model"]

    recording = dataclasses.replace(task, build_model=record)
    metrics = train(recording, config, tmp_path / "run", echo=lambda line: None, verbose=0)
    assert built["model"].jit_compile is True  # Keras did not fall back (op determinism is off)
    assert all(np.isfinite(v) for v in metrics.values()) and metrics


def test_language_model_decode_loop_is_xla_compiled_by_default():
    import inspect

    from textrnn import language_model

    assert (
        inspect.signature(language_model.LanguageModel.__init__).parameters["jit_compile"].default
        is True
    )


# ----------------------------------------------------------------------------- mixed precision


def test_bfloat16_run_on_cpu_trains_and_exports_float32_signatures(tmp_path):
    from textrnn import export

    train_file = write_tsv(tmp_path / "train.tsv", sentiment_rows(24))
    config = tiny_config(train_file, **{"training.mixed_precision": "mixed_bfloat16"})
    seen = {}
    original = sentiment.TASK.build_model

    def record(*args, **kwargs):
        model = original(*args, **kwargs)
        seen["compute"] = model.get_layer("embedding").compute_dtype
        seen["logits"] = model.get_layer("logits").compute_dtype
        return model

    recording = dataclasses.replace(sentiment.TASK, build_model=record)
    lines = []
    metrics = train(recording, config, tmp_path / "run", echo=lines.append, verbose=0)
    assert seen == {"compute": "bfloat16", "logits": "float32"}  # output layer stays float32
    assert np.isfinite(metrics["val_loss"])
    assert any("precision mixed_bfloat16" in line for line in lines)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after training

    version = export.export_run(tmp_path / "run", tmp_path / "export" / "sentiment")
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    for name, spec in serve.structured_outputs.items():
        assert spec.dtype in (tf.float32, tf.string, tf.int32, tf.int64), (name, spec.dtype)
    outputs = serve(tf.constant(["a good film", "awful mess"]))
    floats = [v for v in outputs.values() if v.dtype.is_floating]
    assert floats and all(v.dtype == tf.float32 for v in floats)


# ----------------------------------------------------------------------------- processes


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _weights(path):
    values = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda n, i: values.__setitem__(n, i[()]) if isinstance(i, h5py.Dataset) else None
        )
    return values


def _epoch_losses(output):
    return [
        float(line.split(" loss ")[1].split()[0])
        for line in output.splitlines()
        if line.startswith("epoch ")
    ]


def _files(tmp_path):
    return [
        *tiny_train_command(tmp_path, 64, 16, 2, 8, **{"training.jit_compile": "false"}),
        *("--backup-every-steps", "3"),
    ]


def _start_workers(tmp_path, args, ports, suffix=""):
    hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
    return [
        subprocess.Popen(
            [
                PYTHON,
                "-m",
                "textrnn",
                *args,
                "--run-dir",
                f"w{index}",
                "--strategy",
                "multiworker",
                "--worker-hosts",
                hosts,
                "--task-index",
                str(index),
            ],
            stdout=open(tmp_path / f"w{index}{suffix}.out", "w"),
            stderr=open(tmp_path / f"w{index}{suffix}.err", "w"),
            env=subprocess_env(),
            cwd=tmp_path,
        )
        for index in range(len(ports))
    ]


def _stop(processes):
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(3 * SUBPROCESS_TIMEOUT)
def test_mirrored_cli_over_two_logical_cpus(tmp_path):
    args = _files(tmp_path)
    result = subprocess.run(
        [PYTHON, "-m", "textrnn", *args, "--run-dir", "run", "--strategy", "mirrored"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy with 2 replica(s); global batch 8, 4 per replica" in result.stdout
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "textrnn",
            *args,
            "--run-dir",
            "odd",
            "--strategy",
            "mirrored",
            "--batch-size",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    assert (
        result.returncode == 2
        and "--batch-size 3" in result.stderr
        and "2 replicas" in result.stderr
    )


@pytest.mark.slow
@pytest.mark.timeout(6 * SUBPROCESS_TIMEOUT)
def test_two_workers_end_identical_match_one_worker_and_survive_a_killed_worker(tmp_path):
    args = _files(tmp_path)
    single = subprocess.run(
        [PYTHON, "-m", "textrnn", *args, "--run-dir", "single", "--strategy", "cpu"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    assert single.returncode == 0, single.stderr[-3000:]

    workers = _start_workers(tmp_path, args, _free_ports(2))
    try:
        for process in workers:
            assert process.wait(timeout=SUBPROCESS_TIMEOUT) == 0, (tmp_path / "w0.err").read_text()[
                -3000:
            ]
    finally:
        _stop(workers)
    w0, w1 = (_weights(tmp_path / f"w{i}" / "model.weights.h5") for i in range(2))
    assert w0.keys() == w1.keys() and w0
    for name in w0:
        np.testing.assert_array_equal(w0[name], w1[name], err_msg=name)
    outputs = [(tmp_path / f"w{i}.out").read_text() for i in range(2)]
    assert (
        "CollectiveAllReduceStrategy with 2 replica(s); global batch 8, 4 per replica" in outputs[0]
    )
    np.testing.assert_allclose(_epoch_losses(outputs[0]), _epoch_losses(single.stdout), atol=2e-3)

    # Kill one worker of a longer job, restart the job: it resumes from the backups and finishes.
    longer = list(args)
    longer[longer.index("--epochs") + 1] = "40"
    workers = _start_workers(tmp_path, longer, _free_ports(2), suffix="-killed")
    index = tmp_path / "w1" / "backup" / "backup.json"
    try:
        import time

        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while time.monotonic() < deadline and workers[1].poll() is None:
            try:
                if json.loads(index.read_text())["latest"]["epoch"] >= 3:
                    break
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.1)
        assert workers[1].poll() is None, "job ended before a worker could be killed"
        workers[1].kill()  # one worker dies; the job is restarted as a whole
    finally:
        _stop(workers)
    workers = _start_workers(tmp_path, longer, _free_ports(2), suffix="-restarted")
    try:
        for process in workers:
            assert process.wait(timeout=2 * SUBPROCESS_TIMEOUT) == 0, (
                tmp_path / "w0-restarted.err"
            ).read_text()[-3000:]
    finally:
        _stop(workers)
    restarted = (tmp_path / "w0-restarted.out").read_text()
    assert "resumed from epoch" in restarted.splitlines()[0]
    assert json.loads((tmp_path / "w0" / "state.json").read_text())["epochs_completed"] == 40
    w0, w1 = (_weights(tmp_path / f"w{i}" / "model.weights.h5") for i in range(2))
    for name in w0:
        np.testing.assert_array_equal(w0[name], w1[name], err_msg=name)


def test_repo_has_scaling_bench():
    assert (REPO / "bench" / "scaling.py").is_file()
