"""Per-layer learning rates: discriminative fine-tuning and gradual unfreezing (ULMFiT).

Howard & Ruder (2018) fine-tune a pretrained network layer group by layer
group: lower groups (general features) learn more slowly than upper ones
(discriminative learning rates: each group's rate is the one above it divided
by `training.discriminative_lr`, 2.6 in the paper), and with
`training.gradual_unfreeze` the first epoch trains only the top group, the
second the top two, and so on until everything trains. With
`training.stage_lr_decay` D > 0 each of those stages (the last one: every epoch
from the one that thaws the bottom group on) runs its own slanted triangular
schedule peaking at `learning_rate * D**stage`, as fastai's ULMFiT recipe fits
one cycle per stage; otherwise one schedule spans the run.

Groups, bottom to top, of any model with an `RNNStack` named `rnn_stack`:
everything before the stack (the embedding), each recurrent layer of the
stack, and everything after it (the head: pooling, dense layers; a tied
output shares the embedding's group).

Keras optimizers have one learning rate, so `install_layer_rates` wraps the
optimizer's per-variable `update_step`: the step's learning rate is multiplied
by the variable's group rate, read from one non-trainable vector that a
callback changes between epochs (no retracing). A frozen group (rate 0) also
gets a zero gradient, so its optimizer moments stay at zero until it thaws.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from textrnn.config import TrainingConfig
from textrnn.training.schedules import peak_fraction


def layer_groups(model: keras.Model) -> list[list[Any]]:
    """The model's trainable variables in groups, bottom to top (see the module)."""
    stack = model.get_layer("rnn_stack")
    layers = model.layers
    position = layers.index(stack)
    stack_ids = {id(v) for v in stack.trainable_variables}
    below_ids = {id(v) for layer in layers[:position] for v in layer.trainable_variables}
    groups: list[list[Any]] = [[]]
    groups += [list(layer.trainable_variables) for layer in stack.recurrent_layers]
    head: list[Any] = []
    for variable in model.trainable_variables:
        if id(variable) in below_ids:
            groups[0].append(variable)
        elif id(variable) not in stack_ids:
            head.append(variable)
    groups.append(head)
    return [group for group in groups if group]


def group_rates(groups: int, factor: float, unfrozen: int | None = None) -> np.ndarray:
    """Rate multipliers, bottom to top: factor ** -(distance from the top); 0 below the
    `unfrozen` top groups (all groups train when None)."""
    rates = np.array([factor ** -(groups - 1 - g) for g in range(groups)], "float32")
    if unfrozen is not None:
        rates[: max(0, groups - unfrozen)] = 0.0
    return rates


class LayerRates:
    """The rate multipliers installed in a model's optimizer (`install_layer_rates`)."""

    def __init__(self, model: keras.Model, factor: float):
        self.groups = layer_groups(model)
        self.factor = factor
        self.rates = keras.Variable(
            group_rates(len(self.groups), factor), trainable=False, name="layer_rates"
        )
        group_of = {id(v): g for g, group in enumerate(self.groups) for v in group}
        # By position in the optimizer's variable list (what `update_step` can look up).
        self.group_by_position = [group_of[id(v)] for v in model.trainable_variables]

    def set_unfrozen(self, unfrozen: int | None) -> None:
        self.rates.assign(group_rates(len(self.groups), self.factor, unfrozen))


def install_layer_rates(model: keras.Model, training: TrainingConfig) -> LayerRates | None:
    """Wrap `model.optimizer` (built) with per-group rates when the recipe asks for them."""
    if not training.gradual_unfreeze and training.discriminative_lr == 1.0:
        return None
    layer_rates = LayerRates(model, training.discriminative_lr)
    optimizer = model.optimizer
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # under loss scaling
    update_step = inner.update_step

    def grouped_update_step(gradient, variable, learning_rate):
        position = inner._get_variable_index(variable)
        rate = layer_rates.rates[layer_rates.group_by_position[position]]
        rate = ops.cast(rate, variable.dtype)
        thawed = ops.cast(rate > 0, variable.dtype)
        if isinstance(gradient, tf.IndexedSlices):  # an embedding's sparse gradient
            gradient = tf.IndexedSlices(
                gradient.values * thawed, gradient.indices, gradient.dense_shape
            )
        else:
            gradient = gradient * thawed
        return update_step(gradient, variable, ops.cast(learning_rate, variable.dtype) * rate)

    object.__setattr__(inner, "update_step", grouped_update_step)
    return layer_rates


def unfreezing_stage(epoch: int, groups: int, epochs: int) -> tuple[int, int, int]:
    """(stage, its first epoch, its epochs) of `epoch` (from 0) when `groups` layer groups
    thaw one an epoch over `epochs`: stage k < groups - 1 is epoch k; the last stage is
    every epoch from groups - 1 on."""
    last = groups - 1
    if epoch < last:
        return epoch, epoch, 1
    return last, last, max(1, epochs - last)


class GradualUnfreezing(keras.callbacks.Callback):
    """Epoch k (from 0) trains the top k + 1 layer groups.

    With `stage_cycles` = (peak, decay, epochs, steps_per_epoch) it also sets the
    learning rate before every batch: the slanted triangle of the batch's stage
    (`unfreezing_stage`), peaking at peak * decay**stage.
    """

    def __init__(
        self,
        layer_rates: LayerRates,
        echo=None,
        stage_cycles: tuple[float, float, int, int] | None = None,
    ):
        super().__init__()
        self.layer_rates = layer_rates
        self.echo = echo
        self.stage_cycles = stage_cycles
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        total = len(self.layer_rates.groups)
        unfrozen = min(epoch + 1, total)
        self.layer_rates.set_unfrozen(unfrozen)
        if self.echo:
            cycle = ""
            if self.stage_cycles:
                stage, _, _, peak = self._stage(epoch)
                cycle = f" (stage {stage + 1}, peak learning rate {peak:.3g})"
            self.echo(
                f"gradual unfreezing: epoch {epoch + 1} trains the top {unfrozen} of "
                f"{total} layer groups{cycle}"
            )

    def _stage(self, epoch: int) -> tuple[int, int, int, float]:
        """`unfreezing_stage` of `epoch` and that stage's peak learning rate."""
        peak, decay, epochs, _ = self.stage_cycles
        stage, first, length = unfreezing_stage(epoch, len(self.layer_rates.groups), epochs)
        return stage, first, length, peak * decay**stage

    def stage_learning_rate(self, epoch: int, batch: int) -> float:
        """The learning rate of `batch` (from 0) of `epoch` under the stage cycles."""
        steps_per_epoch = self.stage_cycles[3]
        _, first, length, peak = self._stage(epoch)
        progress = ((epoch - first) * steps_per_epoch + batch) / (length * steps_per_epoch)
        return peak * peak_fraction("slanted", progress)

    def on_train_batch_begin(self, batch, logs=None):
        if self.stage_cycles:
            self.model.optimizer.learning_rate.assign(self.stage_learning_rate(self.epoch, batch))
