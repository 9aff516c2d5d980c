"""The classifier: embedding -> RNNStack -> pooling -> dropout -> dense logits (float32)."""

from __future__ import annotations

import keras

from textrnn.layers.dropout import EmbeddingDropout, TokenDropout
from textrnn.layers.pooling import MaskedPooling
from textrnn.layers.rnn_stack import RNNStack
from textrnn.sentiment.chunked import ChunkedRNNStack
from textrnn.sentiment.config import SentimentConfig
from textrnn.sentiment.transfer import initialize_from_language_model
from textrnn.tokenizers import UNK_ID, Tokenizer
from textrnn.training import optimizer as optimizer_lib


def build_model(
    config: SentimentConfig,
    tokenizer: Tokenizer,
    num_classes: int = 2,
    total_steps: int | None = None,
    compile: bool = True,
    init_from: str | None = None,
) -> keras.Model:
    """Embedding -> RNNStack -> pooling -> dropout -> dense; compiled unless `compile=False`.

    With `model.chunk_length` the stack reads the text chunk by chunk and pools over all of
    them (`textrnn.sentiment.chunked`, ULMFiT's BPT3C).

    `init_from` (training only; a language-model run directory) copies that
    model's embedding and recurrent weights in before training starts.
    """
    model_config = config.model
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")  # (batch, time)
    ids = token_ids
    if model_config.token_dropout:
        ids = TokenDropout(model_config.token_dropout, unknown_id=UNK_ID, name="token_dropout")(ids)
    x = keras.layers.Embedding(
        tokenizer.vocabulary_size, model_config.embedding_dim, mask_zero=True, name="embedding"
    )(ids)  # (batch, time, embedding_dim)
    if model_config.embedding_word_dropout:
        x = EmbeddingDropout(
            model_config.embedding_word_dropout,
            tokenizer.vocabulary_size,
            name="embedding_word_dropout",
        )([ids, x])
    if model_config.embedding_dropout:
        x = keras.layers.SpatialDropout1D(model_config.embedding_dropout, name="embedding_dropout")(
            x
        )
    x = _recurrent_and_pooling(config)(x)  # (batch, features) or (batch, time, features)
    if model_config.pooling != "final" and not model_config.chunk_length:
        x = MaskedPooling(model_config.pooling, name=f"{model_config.pooling}_pooling")(x)
    x = keras.layers.Dropout(model_config.dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)  # (batch, classes)
    model = keras.Model(token_ids, logits, name="sentiment")
    if init_from:
        initialize_from_language_model(model, tokenizer, init_from)
    if not compile:
        return model
    model.compile(
        optimizer=optimizer_lib.make_optimizer(config.training, total_steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        # Reading in chunks: no whole-step XLA (`ChunkedRNNStack.supports_jit`).
        jit_compile=False
        if model_config.chunk_length
        else optimizer_lib.jit_compile_flag(config.training),
    )
    return model


def _recurrent_and_pooling(config: SentimentConfig) -> RNNStack:
    """The recurrent stack, named `rnn_stack`: whole texts, or chunk by chunk (BPT3C), which
    also pools."""
    model_config, stack = config.model, config.model.stack
    settings = dict(stack.layer_arguments(), name="rnn_stack")
    if model_config.chunk_length:
        return ChunkedRNNStack(
            chunk_length=model_config.chunk_length,
            bptt_chunks=config.training.bptt_chunks,
            pooling=model_config.pooling,
            **settings,
        )
    return RNNStack(return_sequences=model_config.pooling != "final", **settings)
