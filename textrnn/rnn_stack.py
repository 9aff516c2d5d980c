"""The shared recurrent stack and the layers that sit beside it.

`RNNStack` is the only place textrnn builds recurrent layers; every task uses
it. Its defaults keep Keras's cuDNN kernels eligible on GPU (tanh / sigmoid
activations, no recurrent dropout, no unrolling, GRU `reset_after=True`), and
masks flow through every layer.
"""

from __future__ import annotations

import logging

import keras
from keras import ops

logger = logging.getLogger(__name__)

CELLS = ("lstm", "gru", "rnn")


def _state_count(cell: str) -> int:
    return 2 if cell == "lstm" else 1


@keras.saving.register_keras_serializable(package="textrnn")
class RNNStack(keras.layers.Layer):
    """A stack of LSTM / GRU / simple RNN layers, optionally bidirectional.

    Args:
        cell: "lstm", "gru" or "rnn".
        num_layers: number of stacked recurrent layers.
        units: units per layer and direction.
        bidirectional: wrap every layer in `keras.layers.Bidirectional`
            (outputs concatenated: 2 * units features).
        dropout: dropout rate applied between layers (not on recurrent
            connections, which would disable cuDNN).
        residual: add each layer's input to its output from the second layer
            on (where the layer returns sequences).
        return_sequences: return the last layer's output at every step
            `(batch, time, features)` instead of the final one `(batch, features)`.
        return_state: also return the final states of every layer, flattened:
            per layer `[h, c]` (LSTM) or `[h]`, forward then backward.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, time, features)`.
        mask: optional boolean `(batch, time)`; padded steps are skipped.
        initial_state: optional flat list of states in the order returned
            with `return_state=True`.

    Example:

    >>> stack = RNNStack(cell="gru", num_layers=2, units=8, bidirectional=True)
    >>> stack(keras.ops.ones((2, 5, 4))).shape
    (2, 5, 16)
    """

    def __init__(
        self,
        cell: str = "lstm",
        num_layers: int = 1,
        units: int = 128,
        bidirectional: bool = False,
        dropout: float = 0.0,
        residual: bool = False,
        return_sequences: bool = True,
        return_state: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if units < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.cell = cell
        self.num_layers = num_layers
        self.units = units
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.residual = residual
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.supports_masking = True

        self.recurrent_layers = []
        for index in range(num_layers):
            last = index == num_layers - 1
            layer = self._make_layer(
                return_sequences=return_sequences or not last, name=f"{cell}_{index}"
            )
            if bidirectional:
                layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{index}")
            self.recurrent_layers.append(layer)
        self.dropout_layers = [
            keras.layers.Dropout(dropout, name=f"dropout_{index}") for index in range(num_layers - 1)
        ]

    def _make_layer(self, return_sequences: bool, name: str) -> keras.layers.Layer:
        common = dict(units=self.units, return_sequences=return_sequences, return_state=True, name=name)
        if self.cell == "lstm":
            return keras.layers.LSTM(**common)
        if self.cell == "gru":
            return keras.layers.GRU(reset_after=True, **common)
        return keras.layers.SimpleRNN(**common)

    @property
    def output_features(self) -> int:
        return self.units * (2 if self.bidirectional else 1)

    @property
    def states_per_layer(self) -> int:
        return _state_count(self.cell) * (2 if self.bidirectional else 1)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for index, layer in enumerate(self.recurrent_layers):
            layer.build(shape)
            shape = shape[:-1] + (self.output_features,)
            if index < len(self.dropout_layers):
                self.dropout_layers[index].build(shape)
        self.built = True

    def call(self, inputs, mask=None, training=None, initial_state=None):
        per_layer = self.states_per_layer
        if initial_state is not None and len(initial_state) != per_layer * self.num_layers:
            raise ValueError(
                f"initial_state needs {per_layer * self.num_layers} tensors "
                f"({per_layer} per layer), got {len(initial_state)}"
            )
        x = inputs  # (batch, time, features)
        states = []
        for index, layer in enumerate(self.recurrent_layers):
            layer_state = None
            if initial_state is not None:
                layer_state = list(initial_state[index * per_layer : (index + 1) * per_layer])
            result = layer(x, mask=mask, training=training, initial_state=layer_state)
            output, layer_states = result[0], list(result[1:])
            states.extend(layer_states)
            if self.residual and index > 0 and len(output.shape) == 3:
                output = output + x  # (batch, time, output_features)
            if index < len(self.dropout_layers):
                output = self.dropout_layers[index](output, training=training)
            x = output
        if self.return_state:
            return [x] + states
        return x

    def compute_mask(self, inputs, mask=None):
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * (self.states_per_layer * self.num_layers)
        return output_mask

    def compute_output_shape(self, input_shape):
        batch, time = input_shape[0], input_shape[1]
        output = (batch, time, self.output_features) if self.return_sequences else (batch, self.output_features)
        if self.return_state:
            return [output] + [(batch, self.units)] * (self.states_per_layer * self.num_layers)
        return output

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cell": self.cell,
                "num_layers": self.num_layers,
                "units": self.units,
                "bidirectional": self.bidirectional,
                "dropout": self.dropout,
                "residual": self.residual,
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="textrnn")
class MaskedPooling(keras.layers.Layer):
    """Max or mean over time that ignores padded steps.

    Args:
        mode: "max" or "mean".
        **kwargs: standard `keras.layers.Layer` arguments.

    A row whose steps are all padding (an empty text) pools to zeros.

    Example:

    >>> MaskedPooling("mean")(keras.ops.ones((2, 3, 4))).shape
    (2, 4)
    """

    def __init__(self, mode: str = "max", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("max", "mean"):
            raise ValueError(f"mode must be 'max' or 'mean', got {mode!r}")
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        weights = ops.cast(ops.expand_dims(mask, -1), inputs.dtype)  # (batch, time, 1)
        if self.mode == "mean":
            total = ops.sum(inputs * weights, axis=1)
            count = ops.maximum(ops.sum(weights, axis=1), ops.cast(1.0, inputs.dtype))
            return total / count
        very_negative = ops.cast(-1e4 if inputs.dtype == "float16" else -1e9, inputs.dtype)
        masked = ops.where(ops.cast(weights, "bool"), inputs, very_negative)
        pooled = ops.max(masked, axis=1)
        any_step = ops.cast(ops.sum(weights, axis=1) > 0, inputs.dtype)  # (batch, 1)
        return pooled * any_step

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
