"""TF Serving's gRPC services (tensorflow.serving.PredictionService and ModelService) from the
tensorflow-serving-api protos, over the same InferenceService as REST."""
import time
from typing import Callable, Dict, Optional

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving.errors import ServingError
from serving.inference import InferenceService, status_error
from serving.metrics import LATENCY_BUCKETS, REQUEST_COUNT, REQUEST_LATENCY, VERSION_LATENCY
from serving.servable import DEFAULT_SIGNATURE, DTYPE_NAMES, NUMPY_DTYPES, string_array

_VALUE_FIELDS = {"DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_INT32": "int_val", "DT_INT16": "int_val",
                 "DT_INT8": "int_val", "DT_UINT8": "int_val", "DT_INT64": "int64_val", "DT_BOOL": "bool_val",
                 "DT_STRING": "string_val", "DT_UINT32": "uint32_val", "DT_UINT64": "uint64_val"}


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Typed value fields (float_val, ...), not tensor_content, as TF Serving answers."""
    dtype = "DT_STRING" if array.dtype.kind in "OSU" else DTYPE_NAMES[array.dtype.name]
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DataType.Value(dtype), tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape]))
    values = array.ravel().tolist()
    if dtype == "DT_STRING":
        values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
    getattr(proto, _VALUE_FIELDS[dtype]).extend(values)
    return proto


def from_tensor_proto(proto: tensor_pb2.TensorProto, dtype: str) -> np.ndarray:
    """A TensorProto's values, from tensor_content or the typed fields; tf.make_ndarray does
    the same with ~15 us of Python per tensor, most of a small request's cost."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    numpy_dtype = NUMPY_DTYPES[dtype]
    if dtype == "DT_STRING":
        array = string_array(proto.string_val)
    elif proto.tensor_content:
        array = np.frombuffer(proto.tensor_content, dtype=numpy_dtype)
    else:
        array = np.array(getattr(proto, _VALUE_FIELDS[dtype]), dtype=numpy_dtype)
    count = int(np.prod(shape))
    if array.size == 1 and count > 1:  # a single value fills the tensor, as in TensorProto
        array = np.repeat(array, count)
    return array.reshape(shape)


def _spec_version(model_spec) -> Dict[str, object]:
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return {"version": model_spec.version.value}
    if choice == "version_label":
        return {"label": model_spec.version_label}
    return {}


class _Base:
    def __init__(self, service: InferenceService):
        self.service = service

    def _resolve(self, request):
        if not request.HasField("model_spec"):
            raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
        return self.service.resolve(request.model_spec.name, **_spec_version(request.model_spec))

    async def _call(self, api: str, request, context, work):
        started = time.perf_counter()
        name, version = request.model_spec.name, ""
        code = "CANCELLED"  # what is counted if the client goes away mid-call
        try:
            response, version = await work()
            code = "OK"
            return response
        except Exception as raised:  # a failed request never takes the server down
            error = status_error(raised)
            code = error.code
            await context.abort(grpc.StatusCode[code], error.message[:1024])
        finally:
            micros = (time.perf_counter() - started) * 1e6
            metrics = self.service.metrics
            metrics.count(REQUEST_COUNT, model_name=name, status=code)
            if code == "OK":
                metrics.observe(REQUEST_LATENCY, micros, LATENCY_BUCKETS, model_name=name, API=api,
                                entrypoint="GRPC")
            metrics.observe(VERSION_LATENCY, micros, LATENCY_BUCKETS, model_name=name, version=version, status=code)


class PredictionService(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request, context):
        return await self._call("Predict", request, context, lambda: self._predict(request))

    async def _predict(self, request):
        servable = self._resolve(request)
        key = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if key not in servable.signatures:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        signature = servable.signatures[key]
        sent, expected = set(request.inputs), set(signature.inputs)
        if len(sent) != len(expected):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}}) "
                f"!= len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
        inputs = {}
        for index, alias in enumerate(request.inputs):
            if alias not in expected:
                raise ServingError("INVALID_ARGUMENT", f"input tensor alias not found in signature: {alias}. "
                                                       f"Inputs expected to be in the set {{{','.join(sorted(expected))}}}.")
            proto = request.inputs[alias]
            want = signature.inputs[alias].dtype
            got = types_pb2.DataType.Name(proto.dtype)
            if got != want:
                raise ServingError("INVALID_ARGUMENT", f"Expects arg[{index}] to be {want[3:].lower()} but "
                                                       f"{got[3:].lower()} is provided")
            try:
                inputs[alias] = from_tensor_proto(proto, want)
            except Exception:
                raise ServingError("INVALID_ARGUMENT", f"tensor parsing error: {alias}") from None
        output_filter = list(request.output_filter)
        for alias in output_filter:
            if alias not in signature.outputs:
                raise ServingError("INVALID_ARGUMENT", f"output tensor alias not found in signature: {alias} "
                                                       f"Outputs expected to be in the set "
                                                       f"{{{','.join(sorted(signature.outputs))}}}.")
            if output_filter.count(alias) > 1:
                raise ServingError("INVALID_ARGUMENT", f"duplicate output tensor alias: {alias}")
        outputs = await self.service.run(servable, key, inputs)
        response = predict_pb2.PredictResponse()
        self._fill_spec(response.model_spec, servable, key)
        for alias, value in outputs.items():
            if not output_filter or alias in output_filter:
                response.outputs[alias].CopyFrom(to_tensor_proto(np.asarray(value)))
        return response, str(servable.version)

    @staticmethod
    def _fill_spec(spec, servable, signature_name: str) -> None:
        spec.name = servable.name
        spec.version.value = servable.version
        spec.signature_name = signature_name

    def _examples(self, request):
        which = request.input.WhichOneof("kind")
        if which == "example_list":
            examples = [e.SerializeToString() for e in request.input.example_list.examples]
        elif which == "example_list_with_context":
            listed = request.input.example_list_with_context
            context = listed.context.SerializeToString()
            # Concatenated serializations merge as protobuf does: an example's feature wins over the context's.
            examples = [context + e.SerializeToString() for e in listed.examples]
        else:
            examples = []
        if not examples:
            raise ServingError("INVALID_ARGUMENT", "Input is empty.")
        return examples

    async def Classify(self, request, context):
        async def work():
            servable = self._resolve(request)
            results = await self.service.classify(servable, request.model_spec.signature_name, self._examples(request))
            response = classification_pb2.ClassificationResponse()
            self._fill_spec(response.model_spec, servable, request.model_spec.signature_name or DEFAULT_SIGNATURE)
            for row in results:
                classifications = response.result.classifications.add()
                for label, score in row:
                    classifications.classes.add(label=label, score=score)
            return response, str(servable.version)

        return await self._call("Classify", request, context, work)

    async def Regress(self, request, context):
        async def work():
            servable = self._resolve(request)
            values = await self.service.regress(servable, request.model_spec.signature_name, self._examples(request))
            response = regression_pb2.RegressionResponse()
            self._fill_spec(response.model_spec, servable, request.model_spec.signature_name or DEFAULT_SIGNATURE)
            for value in values:
                response.result.regressions.add(value=value)
            return response, str(servable.version)

        return await self._call("Regress", request, context, work)

    async def GetModelMetadata(self, request, context):
        async def work():
            if not request.metadata_field:
                raise ServingError("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise ServingError("INVALID_ARGUMENT", f"Metadata field {field} is not supported")
            servable = self._resolve(request)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature_def in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature_def)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(signature_map)
            return response, str(servable.version)

        return await self._call("GetModelMetadata", request, context, work)


class ModelService(_Base, model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: InferenceService, reload_config: Optional[Callable[[object], None]] = None):
        super().__init__(service)
        self._reload_config = reload_config

    async def GetModelStatus(self, request, context):
        try:
            if not request.HasField("model_spec"):
                raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
            spec = request.model_spec
            version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
            response = get_model_status_pb2.GetModelStatusResponse()
            for number, state in self.service.registry.status(spec.name, version):
                entry = response.model_version_status.add(
                    version=number, state=get_model_status_pb2.ModelVersionStatus.State.Value(state.state))
                entry.status.error_code = error_codes_pb2.Code.Value(state.error_code)
                entry.status.error_message = state.error_message
            return response
        except Exception as raised:
            error = status_error(raised)
            await context.abort(grpc.StatusCode[error.code], error.message)

    async def HandleReloadConfigRequest(self, request, context):
        response = model_management_pb2.ReloadConfigResponse()
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise ServingError("INVALID_ARGUMENT", "ServerModelConfig type not supported by "
                                                       "HandleReloadConfigRequest. Only ModelConfigList is currently "
                                                       "supported")
            if self._reload_config is None:
                raise ServingError("UNIMPLEMENTED", "this server was started without a reloadable config")
            try:
                self._reload_config(request.config)
            except ValueError as error:  # a config TF Serving would reject, e.g. a relative base_path
                raise ServingError("INVALID_ARGUMENT", str(error)) from None
            return response
        except Exception as raised:
            error = status_error(raised)
            response.status.error_code = error_codes_pb2.Code.Value(error.code)
            response.status.error_message = error.message
            await context.abort(grpc.StatusCode[error.code], error.message)


class _BearerToken(grpc.aio.ServerInterceptor):
    def __init__(self, token: str):
        self._expected = f"Bearer {token}"

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "Missing or wrong bearer token: send metadata 'authorization: Bearer <token>'")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        if metadata.get("authorization") != self._expected:
            return self._deny
        return await continuation(handler_call_details)


async def start_grpc_server(service: InferenceService, port: int, auth_token: Optional[str] = None,
                            cert_file: Optional[str] = None, key_file: Optional[str] = None,
                            reload_config: Optional[Callable[[object], None]] = None) -> grpc.aio.Server:
    unlimited = [("grpc.max_send_message_length", 2 ** 31 - 1), ("grpc.max_receive_message_length", 2 ** 31 - 1)]
    server = grpc.aio.server(options=unlimited, interceptors=[_BearerToken(auth_token)] if auth_token else None)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(service), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(service, reload_config), server)
    address = f"0.0.0.0:{port}"
    if cert_file:
        with open(cert_file, "rb") as cert, open(key_file, "rb") as key:
            server.add_secure_port(address, grpc.ssl_server_credentials([(key.read(), cert.read())]))
    else:
        server.add_insecure_port(address)
    await server.start()
    return server
