"""The translation model: an encoder-decoder with attention, trained by teacher forcing.

    source ids -> embedding -> RNNStack encoder (bidirectional by default) -> memory
                                   final states -> Bridge (dense or zeros) -> decoder states
    target ids -> AttentionDecoder (`textrnn.translation.decoder`) -> logits

The loss is a label-smoothed cross entropy over the non-padding target tokens.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from textrnn.errors import ConfigError
from textrnn.layers.rnn_stack import RNNStack
from textrnn.tokenizers import PAD_ID, Tokenizer
from textrnn.training import optimizer as optimizer_lib
from textrnn.translation.config import TranslationConfig
from textrnn.translation.decoder import AttentionDecoder, Bridge


@keras.saving.register_keras_serializable(package="textrnn")
class MaskedSequenceLoss(keras.losses.Loss):
    """Token-level cross entropy over non-padding targets, with optional label smoothing.

    Returns the mean over the batch's real target tokens (id != 0), so long
    and short batches weigh each token equally.

    Args:
        label_smoothing: mass spread uniformly over the vocabulary.

    Example:

    >>> loss = MaskedSequenceLoss(0.1)
    >>> float(loss(keras.ops.array([[5, 0]]), keras.ops.zeros((1, 2, 8)))) > 0
    True
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "masked_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")  # (batch, time)
        # (batch, time, vocabulary)
        log_probs = tf.nn.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        nll = -tf.gather(log_probs, y_true, batch_dims=2)  # (batch, time)
        if self.label_smoothing:
            smooth = -ops.mean(log_probs, axis=-1)
            nll = (1.0 - self.label_smoothing) * nll + self.label_smoothing * smooth
        mask = ops.cast(ops.not_equal(y_true, PAD_ID), "float32")
        return ops.sum(nll * mask) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"label_smoothing": self.label_smoothing})
        return config


def _check_model_config(config: TranslationConfig) -> None:
    """Settings each valid alone but impossible together, named so the user can fix them."""
    model = config.model
    memory_features = model.encoder.units * (2 if model.encoder.bidirectional else 1)
    if model.attention == "dot" and memory_features != model.decoder.units:
        raise ConfigError(
            f"model.attention = 'dot' needs decoder units ({model.decoder.units}) equal to the "
            f"encoder output size ({memory_features}); use 'general' or change "
            "model.decoder.units"
        )
    if (
        model.tie_embeddings
        and (model.attentional_dim or model.decoder.units) != model.embedding_dim
    ):
        raise ConfigError(
            "model.tie_embeddings needs model.attentional_dim (or decoder units) equal to "
            "model.embedding_dim"
        )


def build_model(
    config: TranslationConfig,
    tokenizer: tuple[Tokenizer, Tokenizer],
    total_steps: int | None = None,
    compile: bool = True,
    implementation: str = "auto",
) -> keras.Model:
    """The teacher-forcing model `{source_ids, target_ids} -> logits`; compiled unless
    `compile=False`.

    `implementation` is the `RNNStack` one ("auto", "keras" or "fast").
    """
    _check_model_config(config)
    source_tokenizer, target_tokenizer = tokenizer
    # (batch, source_time)
    source_ids = keras.Input(shape=(None,), dtype="int32", name="source_ids")
    target_ids = keras.Input(shape=(None,), dtype="int32", name="target_ids")  # (batch, time)
    memory, encoder_states = _encode(
        config, source_tokenizer.vocabulary_size, source_ids, implementation
    )
    decoder_config = config.model.decoder
    initial_state = Bridge(
        config.model.bridge,
        config.model.encoder.cell,
        config.model.encoder.num_layers,
        config.model.encoder.bidirectional,
        decoder_config.cell,
        decoder_config.num_layers,
        decoder_config.units,
        name="bridge",
    )(encoder_states)
    source_mask = keras.ops.not_equal(source_ids, 0)  # (batch, source_time)
    decoder = _decoder(config, target_tokenizer.vocabulary_size, implementation)
    logits, _ = decoder(target_ids, memory, source_mask, initial_state)
    model = keras.Model(
        {"source_ids": source_ids, "target_ids": target_ids}, logits, name="translation"
    )
    if not compile:
        return model
    model.compile(
        optimizer=optimizer_lib.make_optimizer(config.training, total_steps),
        loss=MaskedSequenceLoss(config.model.label_smoothing),
        jit_compile=optimizer_lib.jit_compile_flag(config.training),
    )
    return model


def _encode(
    config: TranslationConfig, vocabulary_size: int, source_ids, implementation: str
) -> tuple:
    """Source embedding and encoder: `(memory (batch, source_time, features), final states)`."""
    model_config, encoder = config.model, config.model.encoder
    x = keras.layers.Embedding(
        vocabulary_size, model_config.embedding_dim, mask_zero=True, name="source_embedding"
    )(source_ids)  # (batch, source_time, embedding_dim)
    x = keras.layers.Dropout(model_config.embedding_dropout, name="source_embedding_dropout")(x)
    encoded = RNNStack(
        **encoder.layer_arguments(),
        return_sequences=True,
        return_state=True,
        implementation=implementation,
        name="encoder",
    )(x)
    return encoded[0], encoded[1:]


def _decoder(config: TranslationConfig, vocabulary_size: int, implementation: str):
    model_config, decoder = config.model, config.model.decoder
    return AttentionDecoder(
        vocabulary_size=vocabulary_size,
        embedding_dim=model_config.embedding_dim,
        cell=decoder.cell,
        num_layers=decoder.num_layers,
        units=decoder.units,
        dropout=decoder.dropout,
        residual=decoder.residual,
        attention=model_config.attention,
        attention_units=model_config.attention_units,
        attentional_dim=model_config.attentional_dim,
        input_feeding=model_config.input_feeding,
        output_dropout=model_config.dropout,
        embedding_dropout=model_config.embedding_dropout,
        tie_embeddings=model_config.tie_embeddings,
        implementation=implementation,
        name="decoder",
    )
