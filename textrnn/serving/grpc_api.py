"""TensorFlow Serving's gRPC API: `PredictionService` and `ModelService`.

`Predict`, `Classify` and `GetModelMetadata`, and `ModelService.GetModelStatus`,
from the `tensorflow-serving-api` protos. grpc is an optional extra (`serving`):
the server imports this module only when it starts its gRPC port.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from textrnn.serving.codec import classification_json, serialized_examples, tensor_proto_to_array
from textrnn.serving.errors import ServingError, first_line, invalid
from textrnn.serving.execution import Executor, classify, classify_signature
from textrnn.serving.metrics import Stats
from textrnn.serving.options import ServerOptions
from textrnn.serving.registry import Registry
from textrnn.serving.servable import Servable

logger = logging.getLogger(__name__)

CODES = {code.name: code for code in grpc.StatusCode}
ERROR_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name[
    "error_code"
].enum_type.values_by_name
STATES = get_model_status_pb2.ModelVersionStatus.State


def guarded(method: Any) -> Any:
    """Count the call; answer a `ServingError` with its status and anything else as INTERNAL."""

    @functools.wraps(method)
    def wrapper(self: Service, request: Any, context: Any) -> Any:
        self.stats.add(requests=1)
        try:
            return method(self, request, context)
        except ServingError as error:
            self.stats.add(errors=1)
            context.abort(CODES.get(error.code, grpc.StatusCode.UNKNOWN), error.message)
        except Exception as error:  # noqa: BLE001 - the server must survive any request
            if isinstance(error, grpc.RpcError) or type(error).__name__ == "_AbortError":
                raise
            self.stats.add(errors=1)
            logger.exception("internal error in %s", method.__name__)
            context.abort(
                grpc.StatusCode.INTERNAL,
                f"internal error: {type(error).__name__}: {first_line(error)}",
            )

    return wrapper


def version_of(model_spec: Any) -> int | None:
    if model_spec.WhichOneof("version_choice") == "version_label":
        raise ServingError(
            "UNIMPLEMENTED", "version labels are not supported; ask for a version number"
        )
    return model_spec.version.value if model_spec.HasField("version") else None


def deadline(context: Any) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e9 else None


class Service:
    """What both servicers share: the registry, the executor, the limits and the counters."""

    def __init__(
        self, registry: Registry, executor: Executor, options: ServerOptions, stats: Stats
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.options = options
        self.stats = stats

    def lookup(self, model_spec: Any) -> Servable:
        return self.registry.get(model_spec.name, version_of(model_spec))


class PredictionService(Service, prediction_service_pb2_grpc.PredictionServiceServicer):
    @guarded
    def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        servable = self.lookup(request.model_spec)
        signature = servable.signature(request.model_spec.signature_name)
        arrays = {
            key: tensor_proto_to_array(value, signature, key)
            for key, value in request.inputs.items()
        }
        rows = signature.check(arrays)
        if any(a.ndim and a.shape[0] == 0 for a in arrays.values()):
            raise invalid("empty batch: the inputs hold no examples")
        limit = self.options.max_instances
        if rows > limit:
            raise invalid(f"too many instances: {rows} > {limit} (the server's --max-instances)")
        wanted = set(request.output_filter)
        unknown = wanted - set(signature.outputs)
        if unknown:
            raise invalid(f"output tensor alias not found in signature: {sorted(unknown)[0]}")
        outputs = self.executor.run(servable, signature, arrays, rows, deadline(context))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        for key, value in outputs.items():
            if not wanted or key in wanted:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    @guarded
    def Classify(self, request: Any, context: Any) -> Any:  # noqa: N802
        servable = self.lookup(request.model_spec)
        examples = serialized_examples(request.input)
        if len(examples) > self.options.max_instances:
            raise invalid(f"too many instances: {len(examples)} > {self.options.max_instances}")
        classes, scores = classify(
            servable, request.model_spec.signature_name, examples, self.executor
        )
        response = classification_pb2.ClassificationResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = classify_signature(
            servable, request.model_spec.signature_name
        ).name
        for row in classification_json(classes, scores, len(examples)):
            classifications = response.result.classifications.add()
            for label, score in row:
                classifications.classes.add(label=label, score=score)
        return response

    @guarded
    def Regress(self, request: Any, context: Any) -> Any:  # noqa: N802
        raise ServingError(
            "UNIMPLEMENTED", "textrnn exports have no regression signatures; use Predict"
        )

    @guarded
    def MultiInference(self, request: Any, context: Any) -> Any:  # noqa: N802
        raise ServingError("UNIMPLEMENTED", "MultiInference is not supported; use Predict")

    @guarded
    def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        servable = self.lookup(request.model_spec)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise invalid(
                "metadata_field must be ['signature_def'], the only metadata TensorFlow Serving has"
            )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(servable.signature_def_map)
        return response


class ModelService(Service, model_service_pb2_grpc.ModelServiceServicer):
    @guarded
    def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        spec = request.model_spec
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, state in self.registry.status(spec.name, version_of(spec)):
            response.model_version_status.add(
                version=number,
                state=STATES.Value(state.state),
                status=status_pb2.StatusProto(
                    error_code=ERROR_CODES[state.error_code].number,
                    error_message=state.error_message,
                ),
            )
        return response

    @guarded
    def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:  # noqa: N802
        raise ServingError(
            "UNIMPLEMENTED", "textrnn serve polls --model-base-path instead of taking configs"
        )


def add_services(
    server: Any, registry: Registry, executor: Executor, options: ServerOptions, stats: Stats
) -> None:
    """Add the PredictionService and ModelService servicers to a `grpc.server`."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(registry, executor, options, stats), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(registry, executor, options, stats), server
    )
