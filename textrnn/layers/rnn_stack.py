"""The shared recurrent stack and the layers that sit beside it.

`RNNStack` is the only place textrnn builds recurrent layers; every task uses
it. Its defaults keep Keras's cuDNN kernels eligible on GPU (tanh / sigmoid
activations, no recurrent dropout, no unrolling, GRU `reset_after=True`), and
masks flow through every layer.
"""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from textrnn.layers.dropout import LockedDropout
from textrnn.layers.fast_rnn import FastGRU, FastLSTM
from textrnn.layers.weight_drop import WeightDropGRU, WeightDropLSTM, WeightDropSimpleRNN

logger = logging.getLogger(__name__)

CELLS = ("lstm", "gru", "rnn")
IMPLEMENTATIONS = ("auto", "keras", "fast")


def resolve_implementation(implementation: str, cell: str) -> str:
    """ "keras" or "fast": which recurrent layers `RNNStack` builds on this machine.

    `auto` keeps Keras's layers (cuDNN) when a GPU is visible and for the simple
    RNN cell, and takes the fast CPU loop of `textrnn.fast_rnn` otherwise.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, got {implementation!r}"
        )
    if cell == "rnn":
        return "keras"  # no fast simple-RNN loop
    if implementation != "auto":
        return implementation
    return "keras" if tf.config.list_logical_devices("GPU") else "fast"


def warn_if_cudnn_disabled(layer: keras.layers.Layer) -> None:
    """Log a warning when a recurrent layer's configuration rules out cuDNN on GPU."""
    cell = getattr(layer, "cell", None)
    if cell is None or not isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
        return
    reasons = []
    if getattr(cell, "recurrent_dropout", 0.0):
        reasons.append(f"recurrent_dropout={cell.recurrent_dropout}")
    if cell.activation is not keras.activations.tanh:
        reasons.append(f"activation={getattr(cell.activation, '__name__', cell.activation)}")
    if cell.recurrent_activation is not keras.activations.sigmoid:
        reasons.append(
            "recurrent_activation="
            f"{getattr(cell.recurrent_activation, '__name__', cell.recurrent_activation)}"
        )
    if getattr(layer, "unroll", False):
        reasons.append("unroll=True")
    if not getattr(cell, "use_bias", True):
        reasons.append("use_bias=False")
    if isinstance(layer, keras.layers.GRU) and not getattr(cell, "reset_after", True):
        reasons.append("reset_after=False")
    if reasons:
        logger.warning(
            "%s: %s disables the cuDNN kernel on GPU (and the fast CPU loop); expect slow training",
            layer.name,
            ", ".join(reasons),
        )


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
        locked_dropout: the dropout between layers draws one mask per
            sequence, the same at every step (`LockedDropout`), instead of
            fresh noise at every step.
        weight_drop: DropConnect rate on every layer's recurrent kernel while
            training, one mask per batch (`textrnn.layers.weight_drop`); keeps
            cuDNN and the fast CPU loop. 0 (default): the plain layers.
        residual: add each layer's input to its output from the second layer
            on (where the layer returns sequences).
        return_sequences: return the last layer's output at every step
            `(batch, time, features)` instead of the final one `(batch, features)`.
        return_state: also return the final states of every layer, flattened:
            per layer `[h, c]` (LSTM) or `[h]`, forward then backward.
        stateful: keep each layer's final states as the next call's initial
            states (truncated BPTT across batches; needs a fixed batch size;
            `reset_state()` zeroes them).
        implementation: "keras" builds `keras.layers.LSTM` / `GRU` (cuDNN on
            GPU); "fast" builds `textrnn.fast_rnn.FastLSTM` / `FastGRU` (same
            weights and results, a faster CPU loop); "auto" (default) picks
            Keras when a GPU is visible, fast otherwise. Weights are
            interchangeable between the three.
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
        stateful: bool = False,
        implementation: str = "auto",
        locked_dropout: bool = False,
        weight_drop: float = 0.0,
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
        if not 0.0 <= weight_drop < 1.0:
            raise ValueError(f"weight_drop must be in [0, 1), got {weight_drop}")
        self.cell = cell
        self.num_layers = num_layers
        self.units = units
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.residual = residual
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.stateful = stateful
        self.implementation = implementation
        self.locked_dropout = locked_dropout
        self.weight_drop = weight_drop
        self.resolved_implementation = resolve_implementation(implementation, cell)
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
        dropout_class = LockedDropout if locked_dropout else keras.layers.Dropout
        self.dropout_layers = [
            dropout_class(dropout, name=f"dropout_{index}") for index in range(num_layers - 1)
        ]

    def _make_layer(self, return_sequences: bool, name: str) -> keras.layers.Layer:
        common = dict(
            units=self.units,
            return_sequences=return_sequences,
            return_state=True,
            stateful=self.stateful,
            name=name,
        )
        fast = self.resolved_implementation == "fast"
        dropped = bool(self.weight_drop)
        if dropped:  # only then: without it the layers are exactly the plain ones
            common["weight_drop"] = self.weight_drop
        if self.cell == "lstm":
            keras_class = WeightDropLSTM if dropped else keras.layers.LSTM
            layer = (FastLSTM if fast else keras_class)(**common)
        elif self.cell == "gru":
            keras_class = WeightDropGRU if dropped else keras.layers.GRU
            layer = (FastGRU if fast else keras_class)(reset_after=True, **common)
        else:
            layer = (WeightDropSimpleRNN if dropped else keras.layers.SimpleRNN)(**common)
        warn_if_cudnn_disabled(layer)
        return layer

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

    def step(self, inputs, states, training=False):
        """One time step through every layer, for decoding loops.

        Calls the cells directly (no per-call `while_loop`), so a generation
        loop does a few matrix products per token. Unidirectional stacks only.

        Args:
            inputs: `(batch, features)`, one step of the input sequence.
            states: flat list of states, in the order of `return_state=True`.
            training: apply the dropout between layers (a decoder trained
                step by step, e.g. with input feeding).

        Returns:
            `(output, new_states)`: `(batch, units)` and the flat new states.
        """
        if self.bidirectional:
            raise ValueError("RNNStack.step needs a unidirectional stack")
        if training and self.locked_dropout and self.dropout:
            raise ValueError("RNNStack.step cannot lock dropout masks across separate steps")
        if training and self.weight_drop:
            raise ValueError("RNNStack.step does not apply weight drop; call the stack instead")
        per_layer = self.states_per_layer
        x = inputs  # (batch, features)
        new_states = []
        for index, layer in enumerate(self.recurrent_layers):
            layer_states = list(states[index * per_layer : (index + 1) * per_layer])
            output, cell_states = layer.cell(x, layer_states, training=training)
            if not isinstance(cell_states, (list, tuple)):
                cell_states = [cell_states]
            new_states.extend(cell_states)
            if self.residual and index > 0:
                output = output + x  # (batch, units)
            if training and index < len(self.dropout_layers):
                output = self.dropout_layers[index](output, training=training)
            x = output
        return x, new_states

    def reset_state(self) -> None:
        """Zero the carried states of a `stateful` stack."""
        for layer in self.recurrent_layers:
            if getattr(layer, "stateful", False):
                layer.reset_state()

    def compute_mask(self, inputs, mask=None):
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * (self.states_per_layer * self.num_layers)
        return output_mask

    def compute_output_shape(self, input_shape):
        batch, time = input_shape[0], input_shape[1]
        output = (
            (batch, time, self.output_features)
            if self.return_sequences
            else (batch, self.output_features)
        )
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
                "stateful": self.stateful,
                "implementation": self.implementation,
                "locked_dropout": self.locked_dropout,
                "weight_drop": self.weight_drop,
            }
        )
        return config
