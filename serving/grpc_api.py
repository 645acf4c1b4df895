"""TF Serving's gRPC services (tensorflow.serving.PredictionService and ModelService) from the
tensorflow-serving-api protos, over the same InferenceService as REST, answering as
model_servers/prediction_service_impl.cc and model_service_impl.cc do. Messages are limited to
--max_request_bytes (TF Serving allows 2 GiB), a TensorProto may not declare more elements than
that many bytes hold beyond the values it sends, and with a token every call (including
HandleReloadConfigRequest) must carry it."""
import asyncio
import hmac
import math
import time
from typing import Callable, Dict, Optional

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving import request_id
from serving.errors import ServingError, invalid
from serving.inference import InferenceService, shape_text, status_error
from serving.metrics import LATENCY_BUCKETS, REQUEST_COUNT, REQUEST_LATENCY, VERSION_LATENCY
from serving.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, NUMPY_DTYPES, string_array, tf_dtype

_VALUE_FIELDS = {"DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_INT32": "int_val", "DT_INT16": "int_val",
                 "DT_INT8": "int_val", "DT_UINT8": "int_val", "DT_UINT16": "int_val", "DT_INT64": "int64_val",
                 "DT_BOOL": "bool_val", "DT_STRING": "string_val", "DT_UINT32": "uint32_val",
                 "DT_UINT64": "uint64_val", "DT_HALF": "half_val"}
_READ_DTYPES = {**NUMPY_DTYPES, "DT_UINT16": np.uint16, "DT_HALF": np.float16}
_WRAPPED = (np.int8, np.int16, np.uint8, np.uint16)
DTYPE_OF = {number: name for name, number in types_pb2.DataType.items()}  # DataType.Name without its cost
DATATYPE_NUMBERS = dict(types_pb2.DataType.items())
MAX_DIMS = 254  # TensorShape's limit
MAX_MESSAGE = 1024  # ToGRPCStatus truncates longer messages
POINTER_BYTES = 8  # what one element of a string tensor costs at least


def to_tensor_proto(array: np.ndarray, proto: Optional[tensor_pb2.TensorProto] = None) -> tensor_pb2.TensorProto:
    """Tensor::AsProtoField: typed value fields (float_val, ...), not tensor_content; filled in
    place when given the response's own TensorProto (a third of the time of building one)."""
    proto = tensor_pb2.TensorProto() if proto is None else proto
    dtype = tf_dtype(array)
    proto.dtype = DATATYPE_NUMBERS[dtype]
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add().size = size
    flat = array.ravel()
    if dtype in ("DT_COMPLEX64", "DT_COMPLEX128"):
        pairs = np.stack([flat.real, flat.imag], axis=1).ravel().tolist()
        getattr(proto, "scomplex_val" if dtype == "DT_COMPLEX64" else "dcomplex_val").extend(pairs)
        return proto
    values = flat.view(np.uint16).tolist() if dtype == "DT_HALF" else flat.tolist()
    if dtype == "DT_STRING":
        values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
    getattr(proto, _VALUE_FIELDS[dtype]).extend(values)
    return proto


def from_tensor_proto(proto: tensor_pb2.TensorProto, alias: str, max_bytes: int) -> np.ndarray:
    """Tensor::FromProto: tensor_content must hold exactly the shape's elements; typed values
    fill it, the last one repeated if too few, zeros if none. A shape that would expand past
    `max_bytes` is refused (TF Serving would try to allocate it)."""
    dtype = DTYPE_OF.get(proto.dtype, "DT_INVALID")
    numpy_dtype = _READ_DTYPES.get(dtype)
    shape_proto = proto.tensor_shape
    shape = [d.size for d in shape_proto.dim]
    if numpy_dtype is None or shape_proto.unknown_rank or len(shape) > MAX_DIMS or (shape and min(shape) < 0):
        raise invalid(f"tensor parsing error: {alias}")
    count = math.prod(shape)
    if count > 2 ** 63 - 1:
        raise invalid(f"tensor parsing error: {alias}")
    itemsize = POINTER_BYTES if dtype == "DT_STRING" else np.dtype(numpy_dtype).itemsize
    content = proto.tensor_content
    if content:
        if dtype == "DT_STRING" or len(content) != count * itemsize:
            raise invalid(f"tensor parsing error: {alias}")
        return _shaped(np.frombuffer(content, dtype=numpy_dtype), shape, alias)
    values = getattr(proto, _VALUE_FIELDS[dtype])
    sent = len(values)
    if count > sent and count * itemsize > max_bytes:
        raise invalid(f"input {alias} declares shape {shape_text(shape)} ({count} elements) but sends {sent} "
                      f"value{'s' if sent != 1 else ''}; filling it takes {count * itemsize} bytes, more than "
                      f"--max_request_bytes ({max_bytes})")
    items = list(values[:count]) if sent > count else list(values)
    if dtype == "DT_STRING":
        items += [items[-1] if sent else b""] * (count - len(items))
        return _shaped(string_array(items), shape, alias)
    if dtype == "DT_HALF":
        array = np.array(items, dtype=np.uint16).view(np.float16)
    elif numpy_dtype in _WRAPPED:  # int_val holds int32s; narrower types keep the low bits, as in C++
        array = np.array(items, dtype=np.int64).astype(numpy_dtype)
    else:
        array = np.array(items, dtype=numpy_dtype)
    if sent < count:
        fill = array[-1] if sent else np.zeros((), numpy_dtype)
        array = np.concatenate([array, np.full(count - sent, fill, dtype=numpy_dtype)])
    return _shaped(array, shape, alias)


def _shaped(array: np.ndarray, shape: list, alias: str) -> np.ndarray:
    """numpy cannot hold every shape TensorFlow can: [0, 2**62] has no elements, yet its strides
    overflow."""
    try:
        return array.reshape(shape)
    except ValueError:
        raise invalid(f"input {alias} declares shape {shape_text(shape)}, which this server cannot hold in an "
                      "array; send a smaller shape") from None


def _spec_version(model_spec) -> Dict[str, object]:
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return {"version": model_spec.version.value}
    if choice == "version_label":
        return {"label": model_spec.version_label}
    return {}


def _fill_spec(spec, name: str, signature_name: Optional[str], version: int) -> None:
    """MakeModelSpec: an empty signature name becomes serving_default."""
    spec.name = name
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE
    spec.version.value = version


def _serialized_examples(request_input) -> Callable[[], list]:
    """InputToSerializedExampleTensor, read when TF Serving reads it: after the signature checks."""
    def read():
        which = request_input.WhichOneof("kind")
        if which == "example_list":
            return [e.SerializeToString() for e in request_input.example_list.examples]
        if which == "example_list_with_context":
            listed = request_input.example_list_with_context
            context = listed.context.SerializeToString()
            # Concatenated serializations merge as protobuf does: an example's feature wins over the context's.
            return [context + e.SerializeToString() for e in listed.examples]
        return []
    return read


def _truncated(message: str) -> str:
    return message[:MAX_MESSAGE] + "...TRUNCATED" if len(message) > MAX_MESSAGE else message


class _Base:
    def __init__(self, service: InferenceService):
        self.service = service

    async def _call(self, api: str, name: str, context, work, counted: bool = True):
        """Runs `work` (returning response, version); a failure aborts the call with its code."""
        started = time.perf_counter()
        version = ""
        code = "CANCELLED"  # what is counted if the client goes away mid-call
        sent = dict(context.invocation_metadata() or ()).get(request_id.METADATA)
        identifier = request_id.choose(sent if isinstance(sent, str) else None)
        request_id.current.set(identifier)
        trailing = ((request_id.METADATA, identifier),)
        try:
            response, version = await work()
            code = "OK"
            context.set_trailing_metadata(trailing)
            return response
        except Exception as raised:  # a failed request never takes the server down
            error = status_error(raised)
            code = error.code
            await context.abort(grpc.StatusCode[code], _truncated(error.message), trailing)
        finally:
            micros = (time.perf_counter() - started) * 1e6
            metrics = self.service.metrics
            if counted:
                metrics.count(REQUEST_COUNT, model_name=name, status=code)
            if code == "OK" and counted:
                metrics.observe(REQUEST_LATENCY, micros, LATENCY_BUCKETS, model_name=name, API=api,
                                entrypoint="GRPC")
            metrics.observe(VERSION_LATENCY, micros, LATENCY_BUCKETS, model_name=name, version=version, status=code)

    def _resolve(self, request, model_spec=None):
        spec = model_spec if model_spec is not None else request.model_spec
        if model_spec is None and not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
        return self.service.resolve(spec.name, **_spec_version(spec))


class PredictionService(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: InferenceService, max_request_bytes: int):
        super().__init__(service)
        self._max_bytes = max_request_bytes

    async def Predict(self, request, context):
        return await self._call("Predict", request.model_spec.name, context, lambda: self._predict(request))

    async def _predict(self, request):
        servable = self._resolve(request)
        protos = request.inputs
        key, outputs = await self.service.predict(
            servable, request.model_spec.signature_name, dict(protos), list(request.output_filter),
            convert=lambda alias, proto: from_tensor_proto(proto, alias, self._max_bytes),
            dtype_of=lambda alias: DTYPE_OF.get(protos[alias].dtype, "DT_INVALID"))
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, request.model_spec.name, key, servable.version)
        for alias, value in outputs.items():
            to_tensor_proto(np.asarray(value), response.outputs[alias])
        return response, str(servable.version)

    async def Classify(self, request, context):
        async def work():
            servable = self._resolve(request)
            results = await self.service.classify(servable, request.model_spec.signature_name,
                                                  _serialized_examples(request.input))
            response = classification_pb2.ClassificationResponse()
            _fill_spec(response.model_spec, request.model_spec.name, request.model_spec.signature_name,
                       servable.version)
            _add_classifications(response.result, results)
            return response, str(servable.version)

        return await self._call("Classify", request.model_spec.name, context, work)

    async def Regress(self, request, context):
        async def work():
            servable = self._resolve(request)
            values = await self.service.regress(servable, request.model_spec.signature_name,
                                                _serialized_examples(request.input))
            response = regression_pb2.RegressionResponse()
            _fill_spec(response.model_spec, request.model_spec.name, request.model_spec.signature_name,
                       servable.version)
            for value in values:
                response.result.regressions.add(value=value)
            return response, str(servable.version)

        return await self._call("Regress", request.model_spec.name, context, work)

    async def MultiInference(self, request, context):
        """multi_inference_helper.cc: the servable named by the first task's ModelSpec."""
        async def work():
            first = request.tasks[0].model_spec if request.tasks else predict_pb2.PredictRequest().model_spec
            servable = self._resolve(request, first)
            tasks = [(task.model_spec.name, task.model_spec.signature_name, task.method_name)
                     for task in request.tasks]
            results = await self.service.multi_inference(servable, tasks, _serialized_examples(request.input))
            response = inference_pb2.MultiInferenceResponse()
            for task, (method, _, result) in zip(request.tasks, results):
                entry = response.results.add()
                _fill_spec(entry.model_spec, task.model_spec.name, task.model_spec.signature_name, servable.version)
                if method == CLASSIFY_METHOD:
                    _add_classifications(entry.classification_result, result)
                else:
                    for value in result:
                        entry.regression_result.regressions.add(value=value)
            return response, str(servable.version)

        name = request.tasks[0].model_spec.name if request.tasks else ""
        return await self._call("MultiInference", name, context, work, counted=False)

    async def GetModelMetadata(self, request, context):
        async def work():
            if not request.HasField("model_spec"):
                raise invalid("Missing ModelSpec")
            if not request.metadata_field:
                raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise invalid(f"Metadata field {field} is not supported")
            servable = self._resolve(request)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature_def in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature_def)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(signature_map)
            return response, str(servable.version)

        return await self._call("GetModelMetadata", request.model_spec.name, context, work, counted=False)


def _add_classifications(result, rows) -> None:
    for row in rows:
        classifications = result.classifications.add()
        for label, score in row:
            classifications.classes.add(label=label.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                                        score=score)


class ModelService(_Base, model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: InferenceService, reload_config: Optional[Callable[[object], None]] = None):
        super().__init__(service)
        self._reload_config = reload_config

    async def GetModelStatus(self, request, context):
        try:
            if not request.HasField("model_spec"):
                raise invalid("Missing ModelSpec")
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
            await context.abort(grpc.StatusCode[error.code], _truncated(error.message))

    async def HandleReloadConfigRequest(self, request, context):
        response = model_management_pb2.ReloadConfigResponse()
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid("ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                              "ModelConfigList is currently supported")
            if self._reload_config is None:
                raise ServingError("UNIMPLEMENTED", "this server was started without a reloadable config")
            try:
                # Loads take seconds: off the event loop, so other calls are answered meanwhile.
                await asyncio.get_running_loop().run_in_executor(None, self._reload_config, request.config)
            except ValueError as error:  # a config TF Serving would reject, e.g. a relative base_path
                raise invalid(str(error)) from None
            return response
        except Exception as raised:
            error = status_error(raised)
            response.status.error_code = error_codes_pb2.Code.Value(error.code)
            response.status.error_message = error.message
            await context.abort(grpc.StatusCode[error.code], _truncated(error.message))


class _BearerToken(grpc.aio.ServerInterceptor):
    """Every call, whatever the service, needs 'authorization: Bearer <token>' metadata."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "Missing or wrong bearer token: send metadata 'authorization: Bearer <token>'")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation, handler_call_details):
        sent = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if not hmac.compare_digest(sent.encode() if isinstance(sent, str) else sent, self._expected):
            return self._deny
        return await continuation(handler_call_details)


async def start_grpc_server(service: InferenceService, port: int, auth_token: Optional[str] = None,
                            cert_file: Optional[str] = None, key_file: Optional[str] = None,
                            reload_config: Optional[Callable[[object], None]] = None,
                            max_request_bytes: int = 64 << 20) -> grpc.aio.Server:
    options = [("grpc.max_send_message_length", 2 ** 31 - 1), ("grpc.max_receive_message_length", max_request_bytes)]
    server = grpc.aio.server(options=options, interceptors=[_BearerToken(auth_token)] if auth_token else None)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(service, max_request_bytes), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(service, reload_config), server)
    address = f"0.0.0.0:{port}"
    if cert_file:
        with open(cert_file, "rb") as cert, open(key_file, "rb") as key:
            server.add_secure_port(address, grpc.ssl_server_credentials([(key.read(), cert.read())]))
    else:
        server.add_insecure_port(address)
    await server.start()
    return server
