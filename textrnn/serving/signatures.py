"""A loaded version's serving signatures, described once at load.

Each loaded version keeps its signatures as ready concrete functions with
their input and output specs resolved once, so checking a request costs no
call into TensorFlow. `read_signature_defs` gives the SignatureDefMap that
metadata requests answer with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from textrnn.serving.errors import ServingError, first_line, invalid

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class TensorSpecInfo:
    """A signature input or output, resolved once at load."""

    name: str
    dtype: Any  # tf.DType
    shape: tuple[int | None, ...] | None  # None: unknown rank
    is_string: bool = field(init=False)
    batched: bool = field(init=False)  # batch-major: the first dimension is the batch

    def __post_init__(self) -> None:
        # Read on every request: computed once here, not as properties.
        object.__setattr__(self, "is_string", self.dtype.name == "string")
        object.__setattr__(self, "batched", bool(self.shape) and self.shape[0] is None)

    def describe(self) -> str:
        dims = (
            "?"
            if self.shape is None
            else "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"
        )
        return f"{self.dtype.name} {dims}"


class Signature:
    """One serving signature of a loaded version: a concrete function plus its specs."""

    def __init__(self, name: str, function: Any, defaults: dict[str, Any] | None = None) -> None:
        import tensorflow as tf

        self.name = name
        self.function = function
        _, keyword_specs = function.structured_input_signature
        self.inputs = {
            key: TensorSpecInfo(
                key, spec.dtype, None if spec.shape.rank is None else tuple(spec.shape.as_list())
            )
            for key, spec in sorted(keyword_specs.items())
        }
        # Scalar inputs a request may leave out, with the value they then take (the model's
        # manifest declares them for inputs added after its first exports).
        self.defaults = {
            key: np.asarray(value, spec.dtype.as_numpy_dtype)
            for key, value in (defaults or {}).items()
            if (spec := self.inputs.get(key)) is not None and spec.shape == ()
        }
        outputs = function.structured_outputs
        if not isinstance(outputs, dict):
            outputs = {"output_0": outputs}
        self.outputs = {
            key: TensorSpecInfo(
                key, spec.dtype, None if spec.shape.rank is None else tuple(spec.shape.as_list())
            )
            for key, spec in sorted(outputs.items())
        }
        # Merging requests needs every input and output to be batch-major.
        self.batchable = (
            bool(self.inputs)
            and all(s.batched for s in self.inputs.values())
            and all(s.batched for s in self.outputs.values())
        )
        self._constant = tf.constant
        self._invalid_argument = tf.errors.InvalidArgumentError
        self._op_error = tf.errors.OpError

    def check(self, arrays: dict[str, np.ndarray]) -> int:
        """Validate names, dtypes and shapes, filling in the inputs with defaults that
        `arrays` leaves out; return the batch size (rows)."""
        for key, value in self.defaults.items():
            arrays.setdefault(key, value)
        if arrays.keys() != self.inputs.keys():
            missing = sorted(self.inputs.keys() - arrays.keys())
            unknown = sorted(arrays.keys() - self.inputs.keys())
            parts = []
            if missing:
                parts.append("missing input(s) " + ", ".join(repr(m) for m in missing))
            if unknown:
                parts.append("unknown input(s) " + ", ".join(repr(u) for u in unknown))
            raise invalid(
                f"{'; '.join(parts)} for signature {self.name!r}; it takes "
                + ", ".join(f"{k!r} ({s.describe()})" for k, s in self.inputs.items())
            )
        rows = None
        for key, array in arrays.items():
            spec = self.inputs[key]
            if spec.shape is not None:
                if array.ndim != len(spec.shape) or any(
                    want is not None and want != got
                    for want, got in zip(spec.shape, array.shape, strict=True)
                ):
                    raise invalid(
                        f"input {key!r} of signature {self.name!r} "
                        f"expects shape {spec.describe()}, got {list(array.shape)}"
                    )
            if array.ndim and rows is None:
                rows = array.shape[0]
        return 1 if rows is None else rows

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the model once; TensorFlow's argument errors become INVALID_ARGUMENT."""
        try:
            tensors = {
                key: self._constant(value, dtype=self.inputs[key].dtype)
                for key, value in arrays.items()
            }
            result = self.function(**tensors)
        except self._invalid_argument as error:
            raise invalid(f"signature {self.name!r}: {first_line(error)}") from None
        except (TypeError, ValueError) as error:
            raise invalid(f"signature {self.name!r}: {first_line(error)}") from None
        except self._op_error as error:
            raise ServingError(
                "INTERNAL", f"signature {self.name!r}: {first_line(error)}"
            ) from None
        if not isinstance(result, dict):
            result = {"output_0": result}
        return {key: value.numpy() for key, value in result.items()}


def read_signature_defs(path: Path) -> Any:
    """The SignatureDefMap stored in `saved_model.pb` (what GetModelMetadata returns)."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    result = get_model_metadata_pb2.SignatureDefMap()
    if saved.meta_graphs:
        for key, value in saved.meta_graphs[0].signature_def.items():
            result.signature_def[key].CopyFrom(value)
    return result
