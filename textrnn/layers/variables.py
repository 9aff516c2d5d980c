"""The TensorFlow value behind a Keras variable, for code that calls TensorFlow ops directly."""

from __future__ import annotations

import keras


def tf_value(variable):
    """The `tf.Variable` a Keras variable holds; anything else (a tensor, a `tf.Variable`) as is.

    Reading through the returned variable keeps the read on the gradient tape,
    so the hand-written loops and the fused optimizer see the same variable
    Keras updates. `isinstance`, not `hasattr(variable, "value")`: a
    `tf.Variable` has a `value` method, which must not be returned.
    """
    return variable.value if isinstance(variable, keras.Variable) else variable
