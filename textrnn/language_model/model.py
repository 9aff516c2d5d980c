"""The language model: embedding -> RNNStack -> next-token logits, and its stateful training.

Model: embedding -> (word) dropout -> RNNStack (return_state) -> dropout ->
logits, either a dense layer or the transposed embedding matrix
(`tie_embeddings`, `textrnn.layers.embeddings.ReversibleEmbedding`), trained
with the cross-entropy of the next token. The AWD-LSTM regularizers are recipe
keys, all off by default: embedding dropout of whole words, locked dropout
(one mask per sequence) around and between the layers, weight drop on the
recurrent kernels, and AR / TAR terms added to the training loss.

`ResetStates` lives here rather than with the data: it is the other half of
`build_model(stateful=True)`, the one place that knows the stack carries
states between batches and when they must start again from zero.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf

from textrnn import config as config_lib
from textrnn.errors import ConfigError
from textrnn.language_model.config import LanguageModelConfig
from textrnn.layers.dropout import EmbeddingDropout, LockedDropout
from textrnn.layers.embeddings import ReversibleEmbedding
from textrnn.layers.regularization import ActivationRegularizer
from textrnn.layers.rnn_stack import RNNStack
from textrnn.tokenizers import Tokenizer
from textrnn.training import optimizer as optimizer_lib
from textrnn.training import run_dir as run_dir_lib
from textrnn.training.transfer import load_all_weights


def build_model(
    config: LanguageModelConfig,
    tokenizer: Tokenizer,
    total_steps: int | None = None,
    compile: bool = True,
    stateful: bool = False,
    init_from: str | None = None,
) -> keras.Model:
    """Embedding -> RNNStack -> logits `(batch, time, vocabulary)`; compiled unless
    `compile=False`.

    `stateful` (training with `data.carry_state`) fixes the batch size and
    keeps the states between batches; inference always builds the stateless
    model, which loads the same weights.
    """
    model_config, stack = config.model, config.model.stack
    if stateful:
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            raise ConfigError(
                f"data.carry_state needs one replica, the strategy has {replicas}; set it false"
            )
        token_ids = keras.Input(
            batch_shape=(config.training.batch_size, None), dtype="int32", name="token_ids"
        )
    else:
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")  # (batch, time)
    embedding = ReversibleEmbedding(
        tokenizer.vocabulary_size,
        model_config.embedding_dim,
        tied=model_config.tie_embeddings,
        mask_zero=True,
        name="embedding",
    )
    x = embedding(token_ids)  # (batch, time, embedding_dim)
    if model_config.embedding_word_dropout:
        x = EmbeddingDropout(
            model_config.embedding_word_dropout,
            tokenizer.vocabulary_size,
            name="embedding_word_dropout",
        )([token_ids, x])
    dropout_class = LockedDropout if stack.locked_dropout else keras.layers.Dropout
    if model_config.embedding_dropout:
        x = dropout_class(model_config.embedding_dropout, name="embedding_dropout")(x)
    outputs = RNNStack(
        **stack.layer_arguments(),
        return_sequences=True,
        return_state=True,
        stateful=stateful,
        name="rnn_stack",
    )(x)
    x = raw = outputs[0]  # (batch, time, units)
    if model_config.output_dropout:
        x = dropout_class(model_config.output_dropout, name="output_dropout")(x)
    if model_config.ar_alpha or model_config.tar_beta:
        x = ActivationRegularizer(
            model_config.ar_alpha, model_config.tar_beta, name="activation_regularizer"
        )([raw, x])
    if model_config.tie_embeddings:
        if stack.units != model_config.embedding_dim:
            x = keras.layers.Dense(model_config.embedding_dim, name="projection")(x)
        logits = embedding(x, reverse=True)  # (batch, time, vocabulary)
    else:
        logits = keras.layers.Dense(tokenizer.vocabulary_size, dtype="float32", name="logits")(x)
    model = keras.Model(token_ids, logits, name="language_model")
    if init_from:
        start_from_language_model(model, config, init_from)
    if not compile:
        return model
    model.compile(
        optimizer=optimizer_lib.make_optimizer(config.training, total_steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=optimizer_lib.jit_compile_flag(config.training),
    )
    return model


def start_from_language_model(
    model: keras.Model, config: LanguageModelConfig, lm_run_dir: str | os.PathLike
) -> None:
    """Load a language-model run's weights into `model` (`model.init_from`: fine-tuning).

    The shapes that hold weights must match: embedding width, cell, layers,
    units, tied embeddings (the vocabulary is the run's own, copied with it).
    """
    path = Path(lm_run_dir) / run_dir_lib.CONFIG_FILE
    source = config_lib.from_dict(LanguageModelConfig, run_dir_lib.read_json(path, "config"))
    ours, theirs = config.model, source.model
    mismatches = [
        f"{name} {getattr_dotted(ours, name)} vs {getattr_dotted(theirs, name)}"
        for name in (
            "embedding_dim",
            "tie_embeddings",
            "stack.cell",
            "stack.num_layers",
            "stack.units",
        )
        if getattr_dotted(ours, name) != getattr_dotted(theirs, name)
    ]
    if mismatches:
        raise ConfigError(
            f"--init-from {lm_run_dir}: the model must match the language model's: "
            + "; ".join(f"model.{m}" for m in mismatches)
        )
    load_all_weights(model, lm_run_dir)


def getattr_dotted(value, dotted: str):
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


class ResetStates(keras.callbacks.Callback):
    """Zero carried states at every epoch and before every validation pass.

    With `data.carry_state` every epoch (and every validation pass) starts at
    the beginning of the streams again, so the states carried from the end of
    the previous pass would describe the wrong text.
    """

    def _reset(self) -> None:
        for layer in self.model.layers:
            if isinstance(layer, RNNStack):
                layer.reset_state()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()

    def on_test_begin(self, logs=None):
        self._reset()

    def on_test_end(self, logs=None):
        self._reset()
