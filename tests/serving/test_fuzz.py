"""Property-based fuzzing of the REST and gRPC APIs of a real `tfxline serve` (hypothesis):
thousands of generated request bodies, paths, headers, raw HTTP bytes and TensorProtos. Every
answer is a 2xx or a 4xx with a JSON error (gRPC: OK or a client-side code), never a 5xx,
INTERNAL or a dropped connection, and the server keeps serving. The default run is bounded
(FUZZ_EXAMPLES per property, about a minute); `pytest -m slow` runs SLOW_EXAMPLES."""
import base64
import gzip
import json
import socket

import grpc
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (classification_pb2, inference_pb2, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

FUZZ_EXAMPLES = 600
SLOW_EXAMPLES = 20000
# The zoo's models whose signatures all finish quickly and take only dtypes JSON can carry (the
# TF2 module has a spin signature and a float16 one, whose 501 is TF Serving's own answer).
MODELS = ["half_plus_two", "estimator", "tfxline"]
SIGNATURES = ["", "serving_default", "classify_x_to_y", "regress_x_to_y", "regress_x_to_y2", "regress_x2_to_y3",
              "classification", "regression", "predict", "serving_raw", "transform_features", "nope"]
INPUTS = ["x", "inputs", "examples", "miles", "hour", "payment", "fare", "y"]
FEATURES = ["x", "x2", "color", "miles", "hour", "payment", "fare", "tips"]
CLIENT_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED}


def fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# ---------------------------------------------------------------- strategies

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.binary(max_size=24).map(lambda b: {"b64": base64.b64encode(b).decode()}),
                    st.just({"b64": "%%%"}))
tensors = st.recursive(scalars, lambda children: st.lists(children, max_size=4), max_leaves=24)
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=24)
named = st.dictionaries(st.sampled_from(INPUTS) | st.text(max_size=6), tensors, max_size=4)
features = st.dictionaries(st.sampled_from(FEATURES) | st.text(max_size=6), tensors, max_size=4)
bodies = st.fixed_dictionaries({}, optional={
    "signature_name": st.sampled_from(SIGNATURES) | json_values,
    "instances": st.lists(tensors | named, max_size=5) | json_values,
    "inputs": named | tensors,
    "examples": st.lists(features | json_values, max_size=5) | json_values,
    "context": features | json_values,
})
# Mostly well-formed paths, so that most bodies reach the tensors and the model.
verbs = st.sampled_from(["predict"] * 4 + ["classify"] * 2 + ["regress"] * 2 + ["PREDICT", "metadata", "x"])
names = st.sampled_from(MODELS * 6) | st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10)
versions = st.sampled_from([""] * 6 + ["/versions/1", "/versions/2", "/versions/99999999999999999999",
                                       "/labels/stable", "/labels/%0A", "/versions/-1"])
paths = st.tuples(names, versions, verbs)
# Bodies shaped like each model's real requests, with values of any JSON type.
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-2 ** 65, 2 ** 65)
shaped = st.one_of(
    st.tuples(st.just(("half_plus_two", "", "predict")), st.fixed_dictionaries({"instances": st.lists(
        st.lists(numbers | scalars, min_size=1, max_size=2), min_size=1, max_size=4)})),
    st.tuples(st.just(("half_plus_two", "", "predict")), st.fixed_dictionaries({"inputs": st.fixed_dictionaries(
        {"x": st.lists(st.lists(numbers, min_size=0, max_size=2), max_size=3)})})),
    st.tuples(st.sampled_from([("half_plus_two", "", "regress"), ("half_plus_two", "", "classify")]),
              st.fixed_dictionaries({"signature_name": st.sampled_from(["regress_x_to_y", "classify_x_to_y",
                                                                        "regress_x_to_y2", "regress_x2_to_y3"]),
                                     "examples": st.lists(st.fixed_dictionaries({}, optional={
                                         "x": numbers | st.lists(numbers, max_size=3) | scalars,
                                         "x2": numbers | scalars}), min_size=1, max_size=3)},
                                    optional={"context": st.fixed_dictionaries({"x": numbers})})),
    st.tuples(st.just(("tfxline", "", "predict")), st.fixed_dictionaries({
        "signature_name": st.just("serving_raw"), "instances": st.lists(st.fixed_dictionaries(
            {"miles": numbers | scalars, "hour": st.integers(-10, 10 ** 20) | scalars, "payment": scalars,
             "fare": numbers}), min_size=1, max_size=3)})),
    st.tuples(st.sampled_from([("estimator", "", "classify"), ("estimator", "", "regress")]),
              st.fixed_dictionaries({"signature_name": st.sampled_from(["", "classification", "regression"]),
                                     "examples": st.lists(st.fixed_dictionaries({}, optional={
                                         "x": numbers, "color": scalars}), min_size=1, max_size=3)})),
)


def encoded(body, mutation):
    text = json.dumps(body).encode()
    kind, position, junk = mutation
    if kind == "truncate":
        return text[:position % (len(text) + 1)]
    if kind == "insert":
        cut = position % (len(text) + 1)
        return text[:cut] + junk + text[cut:]
    return text


mutations = st.tuples(st.sampled_from(["none"] * 6 + ["truncate", "insert"]), st.integers(0, 10 ** 6),
                      st.binary(min_size=1, max_size=4))


def url_path(path) -> str:
    name, version, verb = path
    from urllib.parse import quote

    base = f"/v1/models/{quote(name, safe='')}{version}"
    return base + "/metadata" if verb == "metadata" else f"{base}:{verb}"


# ---------------------------------------------------------------- REST


def check_answer(response, path: str):
    assert response.status_code < 500, (path, response.status_code, response.text[:500])
    if response.status_code >= 400 and path.startswith("/v1/") and response.request.method != "OPTIONS":
        assert "error" in response.json(), response.text[:500]


@pytest.fixture(scope="module")
def session(zoo_server):
    with requests.Session() as opened:
        yield opened


def run_rest(zoo_server, session, path, body, mutation, gzipped, method):
    data = encoded(body, mutation)
    headers = {"Content-Type": "application/json"}
    if gzipped:
        data, headers["Content-Encoding"] = gzip.compress(data)[:None if gzipped == "whole" else -4], "gzip"
    target = url_path(path)
    response = session.request(method, zoo_server.url + target, data=data, headers=headers, timeout=60)
    check_answer(response, target)


requests_ = st.tuples(paths, bodies) | shaped | shaped


@fuzz_settings(FUZZ_EXAMPLES)
@given(request=requests_, mutation=mutations, gzipped=st.sampled_from([None, None, "whole", "cut"]),
       method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "OPTIONS"]))
def test_rest_bodies_and_paths(zoo_server, session, request, mutation, gzipped, method):
    path, body = request
    run_rest(zoo_server, session, path, body, mutation, gzipped, method)


header_names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-0123456789"), min_size=1, max_size=20)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@fuzz_settings(FUZZ_EXAMPLES // 2)
@given(headers=st.dictionaries(header_names, header_values, max_size=12), path=paths, body=bodies)
def test_rest_headers(zoo_server, session, headers, path, body):
    headers.pop("content-length", None)
    headers.pop("transfer-encoding", None)
    target = url_path(path)
    try:
        response = session.post(zoo_server.url + target, data=json.dumps(body), headers=headers, timeout=60)
    except requests.exceptions.InvalidHeader:
        return  # the client library refuses to send it
    check_answer(response, target)


request_lines = st.tuples(st.sampled_from([b"GET", b"POST", b"PUT", b"OPTIONS", b"BREW", b""]),
                          st.binary(max_size=40).map(lambda b: b"/v1/models/half_plus_two" + b),
                          st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"FOO", b""]))


@fuzz_settings(FUZZ_EXAMPLES // 2)
@given(line=request_lines, head=st.binary(max_size=200), body=st.binary(max_size=200))
def test_raw_http_bytes(zoo_server, line, head, body):
    """Whatever arrives, the server answers before it closes (or waits for more), never < 500."""
    data = b" ".join(line) + b"\r\n" + head + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", zoo_server.rest_port), timeout=10) as sock:
        sock.sendall(data)
        sock.settimeout(0.5)
        try:
            answer = sock.recv(4096)
        except socket.timeout:
            return  # waiting for the rest of a request it cannot end yet: fine
        except ConnectionResetError:
            pytest.fail(f"connection reset for {data[:200]!r}")
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer[:300]


# ---------------------------------------------------------------- gRPC

DTYPES = [types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_INT32, types_pb2.DT_INT64, types_pb2.DT_STRING,
          types_pb2.DT_BOOL, types_pb2.DT_UINT8, types_pb2.DT_HALF, types_pb2.DT_INVALID, types_pb2.DT_COMPLEX64,
          types_pb2.DT_RESOURCE, 999]
dims = st.lists(st.integers(-2, 6) | st.sampled_from([10 ** 6, 10 ** 12, 2 ** 62]), max_size=4)


@st.composite
def tensor_protos(draw):
    proto = tensor_pb2.TensorProto(dtype=draw(st.sampled_from(DTYPES)))
    shape = draw(dims)
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape], unknown_rank=draw(st.booleans())
        and draw(st.booleans())))
    kind = draw(st.sampled_from(["content", "floats", "ints", "strings", "bools", "empty"]))
    if kind == "content":
        proto.tensor_content = draw(st.binary(max_size=64))
    elif kind == "floats":
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=8)))
        proto.double_val.extend(draw(st.lists(st.floats(), max_size=3)))
    elif kind == "ints":
        proto.int_val.extend(draw(st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), max_size=8)))
        proto.int64_val.extend(draw(st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), max_size=8)))
    elif kind == "strings":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=30) | st.sampled_from(
            [example(x=1.0), example(x=[1.0, 2.0]), example(color=b"red")]), max_size=6)))
    elif kind == "bools":
        proto.bool_val.extend(draw(st.lists(st.booleans(), max_size=8)))
    return proto


def example(**values) -> bytes:
    proto = example_pb2.Example()
    for name, value in values.items():
        feature = proto.features.feature[name]
        items = value if isinstance(value, list) else [value]
        if isinstance(items[0], bytes):
            feature.bytes_list.value.extend(items)
        else:
            feature.float_list.value.extend(items)
    return proto.SerializeToString()


examples = st.lists(st.sampled_from([example(x=1.0), example(x=[1.0, 2.0]), example(color=b"red", x=0.5),
                                     example(), example(x2=3.0)]), max_size=5)


@pytest.fixture(scope="module")
def stub(zoo_server):
    with grpc.insecure_channel(f"127.0.0.1:{zoo_server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def call(method, request):
    try:
        method(request, timeout=60)
    except grpc.RpcError as error:
        assert error.code() in CLIENT_CODES, (error.code(), error.details()[:500], str(request)[:500])


@fuzz_settings(FUZZ_EXAMPLES)
@given(model=st.sampled_from(MODELS + [""]), signature=st.sampled_from(SIGNATURES),
       inputs=st.dictionaries(st.sampled_from(INPUTS), tensor_protos(), max_size=4),
       output_filter=st.lists(st.sampled_from(["y", "scores", "outputs", "q"]), max_size=3))
def test_grpc_predict_tensors(stub, model, signature, inputs, output_filter):
    request = predict_pb2.PredictRequest(output_filter=output_filter)
    request.model_spec.name, request.model_spec.signature_name = model, signature
    for alias, proto in inputs.items():
        request.inputs[alias].CopyFrom(proto)
    call(stub.Predict, request)


@fuzz_settings(FUZZ_EXAMPLES // 2)
@given(model=st.sampled_from(MODELS), signature=st.sampled_from(SIGNATURES), serialized=examples,
       context=st.booleans(), tasks=st.lists(st.tuples(st.sampled_from(SIGNATURES), st.sampled_from(
           ["tensorflow/serving/classify", "tensorflow/serving/regress", "tensorflow/serving/predict", ""])),
           max_size=3))
def test_grpc_classify_regress_and_multi_inference(stub, model, signature, serialized, context, tasks):
    def fill(field):
        listed = field.example_list_with_context if context else field.example_list
        if context:
            listed.context.ParseFromString(example(x2=1.0))
        listed.examples.extend(example_pb2.Example.FromString(e) for e in serialized)

    for request_type, method in ((classification_pb2.ClassificationRequest, stub.Classify),
                                 (regression_pb2.RegressionRequest, stub.Regress)):
        request = request_type()
        request.model_spec.name, request.model_spec.signature_name = model, signature
        fill(request.input)
        call(method, request)
    multi = inference_pb2.MultiInferenceRequest()
    for task_signature, task_method in tasks:
        task = multi.tasks.add(method_name=task_method)
        task.model_spec.name, task.model_spec.signature_name = model, task_signature
    fill(multi.input)
    call(stub.MultiInference, multi)


def test_the_server_still_serves_after_the_fuzzing(zoo_server):
    answer = requests.post(zoo_server.url + "/v1/models/half_plus_two:predict", json={"instances": [[1.0]]},
                           timeout=60)
    assert answer.json() == {"predictions": [[2.5]]}
    np.testing.assert_equal(requests.get(zoo_server.url + "/v1/models/half_plus_two", timeout=60).status_code, 200)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rest", "grpc"])
def test_long_fuzzing_run(zoo_server, session, stub, name):
    """The same properties, SLOW_EXAMPLES each (run with `pytest -m slow`)."""
    if name == "rest":
        fuzz_settings(SLOW_EXAMPLES)(given(request=requests_, mutation=mutations,
                                           gzipped=st.sampled_from([None, "whole", "cut"]),
                                           method=st.sampled_from(["POST", "GET"]))(
            lambda request, mutation, gzipped, method: run_rest(zoo_server, session, *request, mutation, gzipped,
                                                                method)))()
    else:
        def predict_one(model, signature, inputs):
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.signature_name = model, signature
            for alias, proto in inputs.items():
                request.inputs[alias].CopyFrom(proto)
            call(stub.Predict, request)

        fuzz_settings(SLOW_EXAMPLES)(given(model=st.sampled_from(MODELS), signature=st.sampled_from(SIGNATURES),
                                           inputs=st.dictionaries(st.sampled_from(INPUTS), tensor_protos(),
                                                                  max_size=3))(predict_one))()


# ---------------------------------------------------------------- fast paths equal the checked ones

SIGNATURE_DTYPES = ["DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_INT64", "DT_INT8", "DT_UINT8", "DT_STRING", "DT_BOOL"]
row_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2 ** 64, 2 ** 64),
                       st.booleans(), st.text(max_size=6))


@fuzz_settings(FUZZ_EXAMPLES)
@given(dtypes=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(SIGNATURE_DTYPES), min_size=1),
       data=st.data())
def test_the_one_call_per_dtype_conversion_equals_the_value_by_value_one(dtypes, data):
    from serving import tensor_json
    from serving.servable import SignatureInfo, TensorInfo

    signature = SignatureInfo({alias: TensorInfo(alias, dtype, [-1]) for alias, dtype in dtypes.items()}, {})
    instances = data.draw(st.lists(st.fixed_dictionaries({alias: row_values for alias in dtypes}), min_size=1,
                                   max_size=4))
    plain = tensor_json._plain_rows(instances, signature, True)
    try:
        checked = tensor_json._checked_rows(instances, signature, True)
    except Exception as error:
        assert plain is None, f"the fast path accepted what the checks refuse: {error}"
        return
    if plain is not None:
        assert plain.keys() == checked.keys()
        for alias in plain:
            assert plain[alias].dtype == checked[alias].dtype and plain[alias].shape == checked[alias].shape
            assert (plain[alias].tobytes() == checked[alias].tobytes()
                    or plain[alias].tolist() == checked[alias].tolist())


output_arrays = st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_, object]).flatmap(
    lambda dtype: st.lists(st.integers(1, 3), min_size=1, max_size=3).flatmap(
        lambda shape: st.lists(st.text(max_size=4).map(str.encode) if dtype is object else
                               st.floats(width=32 if dtype is np.float32 else 64) if dtype in (np.float32, np.float64)
                               else st.booleans() if dtype is np.bool_ else st.integers(-2 ** 31, 2 ** 31 - 1),
                               min_size=int(np.prod(shape)), max_size=int(np.prod(shape))).map(
            lambda values: np.array(values, dtype=dtype).reshape(shape))))


@fuzz_settings(FUZZ_EXAMPLES)
@given(array=output_arrays, alias=st.sampled_from(["y", "scores", "text", "out_bytes"]))
def test_the_one_output_response_equals_the_writers(array, alias):
    from serving import tensor_json

    leaves = {alias: tensor_json._leaf_writer(array, alias)}
    fast = tensor_json.predict_response({alias: array}, row_format=True)
    assert fast == tensor_json._written_rows({alias: array}, [alias], leaves, array.shape[0])
    assert json.loads(fast, parse_constant=float)["predictions"] is not None
