"""Requests and answers <-> NumPy arrays: TensorFlow Serving's JSON formats and protos.

A request is decoded straight into NumPy arrays, checked against the
signature's specs (see `signatures`): the row format (`instances`, answered
with `predictions`), the columnar format (`inputs`, answered with `outputs`),
`{"b64": ...}` for bytes, tf.Examples for `:classify`, and gRPC's
TensorProtos. Outputs shared by the requests of one merged batch
(`BatchOutputs`) are converted to JSON once for all of them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import numpy as np

from textrnn.serving.errors import first_line, invalid
from textrnn.serving.signatures import Signature, TensorSpecInfo


def _utf8(value: str, where: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as error:  # JSON "\ud800": a lone UTF-16 surrogate
        bad = value[error.start]
        raise invalid(
            f"{where}: a string holds a lone UTF-16 surrogate (\\u{ord(bad):04x} at character "
            f'{error.start}), which is not Unicode text; send bytes as {{"b64": ...}}'
        ) from None


def _string_leaf(value: Any, where: str) -> bytes:
    if type(value) is str:
        return _utf8(value, where)
    if type(value) is dict and len(value) == 1 and "b64" in value:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise invalid(f"{where}: 'b64' value is not valid base64") from None
    raise invalid(f"{where} expects strings, got {type(value).__name__} {_short(value)}")


def _short(value: Any) -> str:
    text = json.dumps(value)[:60]
    return text


def _string_array(value: Any, where: str) -> np.ndarray:
    if type(value) is list and all(
        type(v) is str for v in value
    ):  # the common case: a batch of texts
        array = np.empty(len(value), dtype=object)
        try:
            array[:] = [v.encode("utf-8") for v in value]
        except UnicodeEncodeError:
            array[:] = [_utf8(v, where) for v in value]  # raises, naming the string
        return array
    leaves: list[bytes] = []
    shape = _walk(value, leaves, where)
    array = np.empty(len(leaves), dtype=object)
    array[:] = leaves
    return array.reshape(shape)


def _walk(value: Any, leaves: list[bytes], where: str, depth: int = 0) -> tuple[int, ...]:
    if type(value) is not list:
        leaves.append(_string_leaf(value, where))
        return ()
    if depth > 32:
        raise invalid(f"{where}: nested too deeply")
    shapes = {_walk(item, leaves, where, depth + 1) for item in value}
    if len(shapes) > 1:
        raise invalid(f"{where}: ragged nested lists; every row must have the same length")
    return (len(value), *(shapes.pop() if shapes else ()))


def _numeric_array(value: Any, dtype: Any, where: str) -> np.ndarray:
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError):
        raise invalid(
            f"{where}: ragged nested lists; every row must have the same length"
        ) from None
    kind = raw.dtype.kind
    target = np.dtype(dtype.as_numpy_dtype)
    if kind in "OUSV":
        got = _short(value) if kind != "O" else "mixed or non-numeric values"
        raise invalid(f"{where} expects {dtype.name} values, got {got}")
    if target.kind == "b":
        if kind != "b":
            raise invalid(f"{where} expects booleans (true / false), got {raw.dtype.name} values")
        return raw
    if target.kind in "iu" and kind == "f":
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.floor(raw)):
            raise invalid(f"{where} expects integers ({dtype.name}), got non-integral numbers")
    if target.kind in "iu":
        info = np.iinfo(target)
        if raw.size and (raw.min() < info.min or raw.max() > info.max):
            raise invalid(f"{where}: value out of range for {dtype.name}")
    return raw.astype(target, copy=False)


def json_to_array(value: Any, spec: TensorSpecInfo, where: str) -> np.ndarray:
    if spec.is_string:
        return _string_array(value, where)
    if type(value) is dict:
        raise invalid(f"{where} expects {spec.dtype.name} values, got an object")
    return _numeric_array(value, spec.dtype, where)


def rows_to_arrays(instances: Any, signature: Signature) -> tuple[dict[str, np.ndarray], int]:
    """TensorFlow Serving's row format: a list of one value (or object of named inputs) per row."""
    if type(instances) is not list:
        raise invalid("'instances' must be a list with one entry per example")
    if not instances:
        raise invalid("empty batch: 'instances' has no elements")
    specs = signature.inputs
    names = list(specs)
    named = type(instances[0]) is dict and not (
        len(instances[0]) == 1 and "b64" in instances[0] and "b64" not in specs
    )
    if not named:
        if len(names) != 1:
            raise invalid(
                f"signature {signature.name!r} takes {len(names)} inputs ({', '.join(names)}); "
                "give each instance as an object of named inputs"
            )
        spec = specs[names[0]]
        return {names[0]: json_to_array(instances, spec, f"input {names[0]!r}")}, len(instances)
    arrays = {}
    for position, instance in enumerate(instances):
        if type(instance) is not dict:
            raise invalid(
                f"instance {position} is not an object; mix of named and unnamed instances"
            )
        if instance.keys() != specs.keys():
            missing = sorted(specs.keys() - instance.keys() - signature.defaults.keys())
            unknown = sorted(instance.keys() - specs.keys())
            what = "; ".join(
                p
                for p in (
                    "missing input(s) " + ", ".join(map(repr, missing)) if missing else "",
                    "unknown input(s) " + ", ".join(map(repr, unknown)) if unknown else "",
                )
                if p
            )
            if not what:  # only inputs with defaults left out: `Signature.check` fills them
                continue
            raise invalid(
                f"instance {position}: {what} for signature {signature.name!r}; it takes "
                + ", ".join(f"{k!r} ({s.describe()})" for k, s in specs.items())
            )
    for name, spec in specs.items():
        values = [instance[name] for instance in instances if name in instance]
        if not values:
            continue  # an input with a default, left out
        if len(values) != len(instances):
            raise invalid(f"input {name!r} is in some instances but not in all")
        if spec.shape == ():  # a scalar knob given per instance: all must agree
            first = values[0]
            if any(v != first for v in values[1:]):
                raise invalid(
                    f"input {name!r} is a scalar; give the same value in every instance "
                    "or use 'inputs'"
                )
            arrays[name] = json_to_array(first, spec, f"input {name!r}")
        else:
            arrays[name] = json_to_array(values, spec, f"input {name!r}")
    return arrays, len(instances)


def columns_to_arrays(inputs: Any, signature: Signature) -> dict[str, np.ndarray]:
    """TensorFlow Serving's columnar format: one value (single input) or an object of inputs."""
    specs = signature.inputs
    if type(inputs) is dict and not (len(inputs) == 1 and "b64" in inputs and "b64" not in specs):
        return {
            name: json_to_array(value, specs[name], f"input {name!r}")
            if name in specs
            else np.zeros(0)
            for name, value in inputs.items()
        }
    if len(specs) != 1:
        raise invalid(
            f"signature {signature.name!r} takes {len(specs)} inputs ({', '.join(specs)}); "
            "give 'inputs' as an object"
        )
    name = next(iter(specs))
    return {name: json_to_array(inputs, specs[name], f"input {name!r}")}


def array_to_json(array: np.ndarray, name: str) -> Any:
    """An output as JSON: strings decoded as UTF-8 (base64 objects for `*_bytes` or non-UTF-8)."""
    if array.dtype == object or array.dtype.kind == "S":
        flat = array.reshape(-1).tolist()
        if name.endswith("_bytes"):
            values = [{"b64": base64.b64encode(v).decode("ascii")} for v in flat]
        else:
            values = []
            for v in flat:
                try:
                    values.append(v.decode("utf-8"))
                except UnicodeDecodeError:
                    values.append({"b64": base64.b64encode(v).decode("ascii")})
        if array.ndim == 0:
            return values[0]
        if array.ndim == 1:
            return values
        nested = np.empty(len(values), dtype=object)
        nested[:] = values
        return nested.reshape(array.shape).tolist()
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        return np.where(np.isfinite(array), array, np.nan).tolist()
    return array.tolist()


class BatchOutputs:
    """The outputs of one merged model call, shared by the requests it answers.

    Each request gets a `RowSlice` of it. Answers in JSON convert the whole
    batch once (one `tolist` per output) and slice the lists, instead of
    converting every request's arrays on its own.
    """

    __slots__ = ("arrays", "_columns", "_rows")

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self._columns: dict[str, list[Any]] | None = None
        self._rows: list[dict[str, Any]] | None = None

    def rows(self, start: int, end: int) -> RowSlice:
        result = RowSlice({name: value[start:end] for name, value in self.arrays.items()})
        result.batch, result.start, result.end = self, start, end
        return result

    def json_columns(self) -> dict[str, list[Any]]:
        """Output name -> one JSON value per row of the batch (computed once)."""
        if self._columns is None:
            self._columns = {name: array_to_json(v, name) for name, v in self.arrays.items()}
        return self._columns

    def json_rows(self) -> list[Any]:
        """One JSON row per row of the batch: the value (one output) or an object of outputs."""
        if self._rows is None:
            self._rows = rows_json(self.json_columns())
        return self._rows


class RowSlice(dict):
    """One request's rows of a merged batch: output name -> array, plus where they came from."""

    batch: BatchOutputs
    start: int
    end: int


def predictions_json(outputs: dict[str, np.ndarray], rows: int) -> list[Any]:
    """Row format answer: one value per row (single output) or one object per row."""
    if type(outputs) is RowSlice:  # rows of a merged batch, converted once for all of them
        return outputs.batch.json_rows()[outputs.start : outputs.end]
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != rows:
            raise invalid(
                f"output {name!r} has shape {list(value.shape)}, not one row per instance; "
                "use the columnar format ('inputs') for this signature"
            )
    return rows_json({name: array_to_json(value, name) for name, value in outputs.items()})


def rows_json(columns: dict[str, list[Any]]) -> list[Any]:
    """Per-output JSON columns -> rows: the values (one output) or one object of outputs per row."""
    if len(columns) == 1:
        return next(iter(columns.values()))
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def outputs_json(outputs: dict[str, np.ndarray]) -> Any:
    if type(outputs) is RowSlice:
        columns = outputs.batch.json_columns()
        converted = {name: column[outputs.start : outputs.end] for name, column in columns.items()}
    else:
        converted = {name: array_to_json(value, name) for name, value in outputs.items()}
    return next(iter(converted.values())) if len(converted) == 1 else converted


def example_from_json(features: Any, where: str) -> Any:
    import tensorflow as tf

    if type(features) is not dict:
        raise invalid(f"{where} must be an object of feature name -> value(s)")
    example = tf.train.Example()
    for key, value in features.items():
        values = value if type(value) is list else [value]
        feature = example.features.feature[key]
        if all(type(v) is int for v in values):
            feature.int64_list.value.extend(values)
        elif all(type(v) in (int, float) for v in values):
            feature.float_list.value.extend(values)
        else:
            feature.bytes_list.value.extend(
                _string_leaf(v, f"{where}, feature {key!r}") for v in values
            )
    return example


def serialized_examples(proto_input: Any) -> list[bytes]:
    """Serialized tf.Examples from a tensorflow_serving `Input` proto (context merged in)."""
    kind = proto_input.WhichOneof("kind")
    if kind == "example_list":
        return [example.SerializeToString() for example in proto_input.example_list.examples]
    if kind == "example_list_with_context":
        context = proto_input.example_list_with_context.context
        out = []
        for example in proto_input.example_list_with_context.examples:
            merged = type(example)()
            merged.CopyFrom(context)
            merged.MergeFrom(example)
            out.append(merged.SerializeToString())
        return out
    raise invalid("classification input holds no examples")


def classification_json(
    classes: np.ndarray | None, scores: np.ndarray | None, rows: int
) -> list[list[list[Any]]]:
    result = []
    for row in range(rows):
        labels = (
            [c.decode("utf-8", "replace") for c in classes[row]] if classes is not None else None
        )
        values = scores[row].tolist() if scores is not None else None
        width = len(labels) if labels is not None else len(values)  # type: ignore[arg-type]
        result.append(
            [
                [
                    labels[i] if labels is not None else str(i),
                    values[i] if values is not None else 0.0,
                ]
                for i in range(width)
            ]
        )
    return result


def tensor_proto_to_array(proto: Any, signature: Signature, name: str) -> np.ndarray:
    import tensorflow as tf

    spec = signature.inputs.get(name)
    if spec is not None and proto.dtype != spec.dtype.as_datatype_enum:
        got = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "an unset dtype"
        raise invalid(
            f"input {name!r} of signature {signature.name!r} expects {spec.dtype.name}, got {got}"
        )
    if (
        proto.dtype == tf.string.as_datatype_enum
        and not proto.string_val
        and math.prod(d.size for d in proto.tensor_shape.dim) > 0
    ):
        # make_ndarray would serve empty strings (what an empty batch of texts is not).
        raise invalid(
            f"input {name!r}: a DT_STRING tensor of shape "
            f"{[d.size for d in proto.tensor_shape.dim]} holds no string_val"
        )
    try:
        return tf.make_ndarray(proto)
    except Exception as error:  # noqa: BLE001 - a malformed TensorProto
        raise invalid(f"input {name!r}: malformed TensorProto ({first_line(error)})") from None
