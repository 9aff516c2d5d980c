"""Strategies and process settings: CPU / TPU / multi-worker choice, TF_CONFIG, seeds."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import sentiment_rows, tiny_config, write_tsv
from textrnn import sentiment
from textrnn.errors import ConfigError, UserError
from textrnn.training.fit import train
from textrnn.training.strategy import choose_strategy, set_seed, worker_tf_config


def test_strategy_choice_on_cpu(monkeypatch):
    assert choose_strategy("cpu") is tf.distribute.get_strategy()
    assert choose_strategy("auto").num_replicas_in_sync == 1
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="TF_CONFIG"):
        choose_strategy("multiworker")


def test_worker_flags_build_tf_config():
    value = json.loads(worker_tf_config("a:1,b:2", 1))
    assert value == {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    with pytest.raises(ConfigError, match="--task-index"):
        worker_tf_config("a:1,b:2", 2)
    with pytest.raises(ConfigError, match="--worker-hosts"):
        worker_tf_config("nohost", 0)


def test_tpu_without_a_tpu_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no TPU found .*--tpu"):
        choose_strategy("tpu", "no-such-tpu")
    train_file = write_tsv(tmp_path / "train.tsv", sentiment_rows(8))
    config = tiny_config(train_file, **{"training.strategy": "tpu", "training.tpu": "no-such-tpu"})
    with pytest.raises(UserError, match="no TPU found"):
        train(sentiment.TASK, config, tmp_path / "run", echo=lambda line: None, verbose=0)
    assert not (tmp_path / "run").exists()  # the new run failed before its first step


def test_set_seed_makes_keras_initialization_repeatable():
    set_seed(3)
    a = keras.layers.Dense(4)
    a.build((None, 3))
    set_seed(3)
    b = keras.layers.Dense(4)
    b.build((None, 3))
    np.testing.assert_array_equal(a.kernel.numpy(), b.kernel.numpy())
