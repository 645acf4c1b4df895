"""`tfxline serve` on SavedModels exported the ways other tools export them (TF Serving's own
half_plus_two, a TF2 tf.Module, an Estimator-style export, tfxline's export): every REST and
gRPC answer equals what the model itself computes, called in the test through
tf.saved_model.load; and the private fast path gives exactly what the public one gives."""
import base64
import json

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, inference_pb2, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving.saved_model import SPEEDUPS_ENV, load_saved_model
from serving.servable import string_array
from tests.serving import models
from tests.serving.conftest import Server, zoo_config

X = np.array([[1.0], [2.0], [5.0]], np.float32)
FEATURES = np.array([[1.0, 2.0], [-0.5, 0.25], [3.0, -1.0]], np.float32)
COLORS = ["red", "blue", "purple"]
COUNTS = [1, 2, 30]
TEXTS = ["héllo", "", "ab\x00c"]


@pytest.fixture(scope="module")
def own(model_zoo):
    """Each model's own answers: (model, signature, **inputs) -> outputs, by the public call."""
    calls = {name: models.public_call(path) for name, path in model_zoo.items()}
    return lambda model, signature, **inputs: calls[model](signature, **inputs)


@pytest.fixture(scope="module")
def stub(zoo_server):
    with grpc.insecure_channel(f"127.0.0.1:{zoo_server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def rest(server, model, verb, body, signature=None):
    if signature is not None:
        body = {"signature_name": signature, **body}
    response = requests.post(f"{server.url}/v1/models/{model}:{verb}", data=json.dumps(body), timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def assert_same(served, expected):
    """Served values (from JSON or a TensorProto) equal the model's, exactly, in its dtype."""
    expected = np.asarray(expected)
    if expected.dtype == object:
        assert [v.encode() if isinstance(v, str) else v for v in np.asarray(served, object).ravel()] == \
            list(expected.ravel())
        assert np.asarray(served, object).shape == expected.shape
    else:
        np.testing.assert_array_equal(np.asarray(served).astype(expected.dtype), expected)


def hpt_examples():
    return [models.example(x=1.0), models.example(x=3.0, x2=2.0), models.example(x=-4.0)]


def tf2_examples():
    return [models.example(features=[1.0, 2.0], color="red"), models.example(features=[0.5, -1.5])]


def estimator_examples():
    return [models.example(x=0.5, color="red"), models.example(x=-1.0, color="blue"), models.example(x=2.0)]


# ---------------------------------------------------------------- REST


def test_half_plus_two_predict_classify_regress_over_rest(zoo_server, own):
    """The TF1 graph that answered 400 'Signature specifies 6 arguments, got: 5' before."""
    served = rest(zoo_server, "half_plus_two", "predict", {"instances": X.tolist()})
    assert_same(served["predictions"], own("half_plus_two", "serving_default", x=X)["y"])
    served = rest(zoo_server, "half_plus_two", "predict", {"inputs": {"x": X.tolist()}})
    assert_same(served["outputs"], own("half_plus_two", "serving_default", x=X)["y"])
    served = rest(zoo_server, "half_plus_two", "predict", {"instances": [[2.0]]}, "regress_x2_to_y3")
    assert_same(served["predictions"], own("half_plus_two", "regress_x2_to_y3", inputs=[[2.0]])["outputs"])

    examples = hpt_examples()
    body = {"examples": [{"x": 1.0}, {"x": 3.0, "x2": 2.0}, {"x": -4.0}]}
    served = rest(zoo_server, "half_plus_two", "classify", body, "classify_x_to_y")
    scores = own("half_plus_two", "classify_x_to_y", inputs=examples)["scores"]
    assert [[label for label, _ in row] for row in served["results"]] == [[""]] * 3
    assert_same([[score for _, score in row] for row in served["results"]], scores)
    for signature in ("regress_x_to_y", "regress_x_to_y2"):
        served = rest(zoo_server, "half_plus_two", "regress", body, signature)
        assert_same(served["results"], own("half_plus_two", signature, inputs=examples)["outputs"].ravel())
    # A context holds features shared by every example; an example's own feature wins.
    body = {"context": {"x": 7.0}, "examples": [{"x2": 1.0}, {"x": 1.0}]}
    served = rest(zoo_server, "half_plus_two", "regress", body, "regress_x_to_y")
    assert_same(served["results"], own("half_plus_two", "regress_x_to_y", inputs=[
        models.example(x=7.0, x2=1.0), models.example(x=1.0)])["outputs"].ravel())


def test_half_plus_two_regress_on_a_float_signature_is_the_sessions_error(zoo_server):
    """regress_x2_to_y3 takes floats, not tf.Examples: TF Serving feeds the examples anyway and
    the session refuses them, a 400 with TensorFlow's message, not a server fault."""
    response = requests.post(f"{zoo_server.url}/v1/models/half_plus_two:regress", timeout=60, data=json.dumps(
        {"signature_name": "regress_x2_to_y3", "examples": [{"x2": 1.0}]}))
    assert response.status_code == 400, response.text
    assert "float" in response.json()["error"] and "string" in response.json()["error"]


def test_tf2_module_with_several_inputs_and_outputs_over_rest(zoo_server, own):
    expected = own("tf2_module", "serving_default", features=FEATURES, color=COLORS, count=COUNTS)
    rows = [{"features": f.tolist(), "color": c, "count": n} for f, c, n in zip(FEATURES, COLORS, COUNTS)]
    served = rest(zoo_server, "tf2_module", "predict", {"instances": rows})
    assert len(served["predictions"]) == 3
    for alias, value in expected.items():
        assert_same([row[alias] for row in served["predictions"]], value)
    served = rest(zoo_server, "tf2_module", "predict",
                  {"inputs": {"features": FEATURES.tolist(), "color": COLORS, "count": COUNTS}})
    for alias, value in expected.items():
        assert_same(served["outputs"][alias], value)

    repeat = np.array([1, 2, 3], np.int32)
    expected = own("tf2_module", "text", text=[t.encode() for t in TEXTS], repeat=repeat)
    served = rest(zoo_server, "tf2_module", "predict", {"instances": [
        {"text": {"b64": base64.b64encode(t.encode()).decode()}, "repeat": int(r)} for t, r in zip(TEXTS, repeat)]},
        "text")
    # An output alias ending in _bytes is written as base64, as TF Serving writes it.
    assert [base64.b64decode(row["upper_bytes"]["b64"]) for row in served["predictions"]] == \
        list(expected["upper_bytes"])
    assert_same([row["length"] for row in served["predictions"]], expected["length"])


def test_tf2_module_classify_and_regress_signatures_over_rest(zoo_server, own):
    examples = tf2_examples()
    body = {"examples": [{"features": [1.0, 2.0], "color": "red"}, {"features": [0.5, -1.5]}]}
    expected = own("tf2_module", "classify", inputs=examples)
    served = rest(zoo_server, "tf2_module", "classify", body, "classify")
    assert [[label for label, _ in row] for row in served["results"]] == [["a", "b", "c"]] * 2
    assert_same([[score for _, score in row] for row in served["results"]], expected["scores"])
    served = rest(zoo_server, "tf2_module", "regress", body, "regress")
    assert_same(served["results"], own("tf2_module", "regress", inputs=examples)["outputs"])


def test_estimator_style_export_over_rest(zoo_server, own):
    examples = estimator_examples()
    body = {"examples": [{"x": 0.5, "color": "red"}, {"x": -1.0, "color": "blue"}, {"x": 2.0}]}
    for signature in ("", "classification"):
        expected = own("estimator", signature or "serving_default", inputs=examples)
        served = rest(zoo_server, "estimator", "classify", body, signature)
        assert_same([[label for label, _ in row] for row in served["results"]], expected["classes"])
        assert_same([[score for _, score in row] for row in served["results"]], expected["scores"])
    served = rest(zoo_server, "estimator", "regress", body, "regression")
    assert_same(served["results"], own("estimator", "regression", inputs=examples)["outputs"].ravel())
    served = rest(zoo_server, "estimator", "predict",
                  {"instances": [{"b64": base64.b64encode(e).decode()} for e in examples]}, "predict")
    for alias, value in own("estimator", "predict", examples=examples).items():
        assert_same([row[alias] for row in served["predictions"]], value)


def test_tfxline_export_over_rest(zoo_server, own):
    rows = [{"miles": 1.5, "hour": 2, "payment": "Cash", "fare": 3.0},
            {"miles": 0.0, "hour": 9, "payment": "Bitcoin", "fare": 0.0}]
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    expected = own("tfxline", "serving_raw", **{k: [v.encode() if isinstance(v, str) else v for v in values]
                                                for k, values in columns.items()})["scores"]
    served = rest(zoo_server, "tfxline", "predict", {"instances": rows}, "serving_raw")
    assert_same(served["predictions"], expected)
    examples = models.tiny_examples()
    served = rest(zoo_server, "tfxline", "predict",
                  {"instances": [{"b64": base64.b64encode(e).decode()} for e in examples]})
    assert_same(served["predictions"], own("tfxline", "serving_default", examples=examples)["scores"])


def test_a_signature_with_sparse_outputs_fails_as_in_tf_serving(zoo_server):
    """transform_features returns SparseTensors, which a SignatureDef lists with no tensor name:
    TF Serving's session cannot fetch them either, and says so (INVALID_ARGUMENT)."""
    response = requests.post(f"{zoo_server.url}/v1/models/tfxline:predict", timeout=60, data=json.dumps(
        {"signature_name": "transform_features",
         "instances": [{"b64": base64.b64encode(models.tiny_examples()[0]).decode()}]}))
    assert response.status_code == 400
    assert "not found in the Graph" in response.json()["error"]


# ---------------------------------------------------------------- gRPC


def predict_request(model, signature, **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = model, signature
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return request


def examples_input(field, serialized):
    field.example_list.examples.extend(tf.train.Example.FromString(e) for e in serialized)


def test_every_model_over_grpc_predict(stub, own):
    cases = [
        ("half_plus_two", "serving_default", {"x": X}),
        ("half_plus_two", "regress_x2_to_y3", {"inputs": np.array([[2.0]], np.float32)}),
        ("tf2_module", "serving_default", {"features": FEATURES, "color": np.array(COLORS, object),
                                           "count": np.array(COUNTS, np.int64)}),
        ("tf2_module", "text", {"text": np.array([t.encode() for t in TEXTS], object),
                                "repeat": np.array([3, 2, 1], np.int32)}),
        ("estimator", "predict", {"examples": np.array(estimator_examples(), object)}),
        ("tfxline", "serving_default", {"examples": np.array(models.tiny_examples(), object)}),
    ]
    for model, signature, inputs in cases:
        response = stub.Predict(predict_request(model, signature, **inputs), timeout=60)
        expected = own(model, signature, **inputs)
        assert set(response.outputs) == set(expected), (model, signature)
        for alias, value in expected.items():
            assert_same(tf.make_ndarray(response.outputs[alias]), value)
        assert (response.model_spec.name, response.model_spec.signature_name) == (model, signature)
        assert response.model_spec.version.value == 1


def test_every_model_over_grpc_classify_and_regress(stub, own):
    cases = [("half_plus_two", "classify_x_to_y", "regress_x_to_y", hpt_examples()),
             ("tf2_module", "classify", "regress", tf2_examples()),
             ("estimator", "classification", "regression", estimator_examples())]
    for model, classify, regress, examples in cases:
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name, request.model_spec.signature_name = model, classify
        examples_input(request.input, examples)
        result = stub.Classify(request, timeout=60)
        expected = own(model, classify, inputs=examples)
        assert_same([[c.score for c in row.classes] for row in result.result.classifications], expected["scores"])
        if "classes" in expected:
            assert_same([[c.label for c in row.classes] for row in result.result.classifications], expected["classes"])
        assert result.model_spec.signature_name == classify

        request = regression_pb2.RegressionRequest()
        request.model_spec.name, request.model_spec.signature_name = model, regress
        examples_input(request.input, examples)
        result = stub.Regress(request, timeout=60)
        assert_same([r.value for r in result.result.regressions],
                    own(model, regress, inputs=examples)["outputs"].ravel())


def test_multi_inference_with_classify_and_regress_tasks(stub, own):
    """One session run for every task, results in task order (multi_inference.cc)."""
    for model, tasks, examples in [
            ("half_plus_two", [("regress_x_to_y", "regress"), ("classify_x_to_y", "classify"),
                               ("regress_x_to_y2", "regress")], hpt_examples()),
            ("estimator", [("classification", "classify"), ("regression", "regress")], estimator_examples())]:
        request = inference_pb2.MultiInferenceRequest()
        for signature, method in tasks:
            task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
            task.model_spec.name, task.model_spec.signature_name = model, signature
        examples_input(request.input, examples)
        response = stub.MultiInference(request, timeout=60)
        assert [(r.model_spec.name, r.model_spec.signature_name, r.model_spec.version.value)
                for r in response.results] == [(model, signature, 1) for signature, _ in tasks]
        for (signature, method), result in zip(tasks, response.results):
            expected = own(model, signature, inputs=examples)
            if method == "classify":
                assert_same([[c.score for c in row.classes] for row in result.classification_result.classifications],
                            expected["scores"])
            else:
                assert_same([r.value for r in result.regression_result.regressions], expected["outputs"].ravel())


@pytest.mark.parametrize("tasks, code, message", [
    ([("half_plus_two", "regress_x_to_y", "regress"), ("half_plus_two", "regress_x_to_y", "regress")],
     grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: regress_x_to_y"),
    ([("half_plus_two", "regress_x_to_y", "regress"), ("estimator", "regression", "regress")],
     grpc.StatusCode.INVALID_ARGUMENT, "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
    ([("half_plus_two", "nope", "regress")], grpc.StatusCode.INVALID_ARGUMENT,
     "Requested signature not found in model graph: nope"),
    ([("half_plus_two", "serving_default", "predict")], grpc.StatusCode.UNIMPLEMENTED,
     "Unsupported signature method_name: tensorflow/serving/predict"),
    ([], grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
])
def test_multi_inference_refusals_are_tf_servings(stub, tasks, code, message):
    request = inference_pb2.MultiInferenceRequest()
    for model, signature, method in tasks:
        task = request.tasks.add(method_name=method if "/" in method else f"tensorflow/serving/{method}")
        task.model_spec.name, task.model_spec.signature_name = model, signature
    examples_input(request.input, hpt_examples())
    with pytest.raises(grpc.RpcError) as error:
        stub.MultiInference(request, timeout=60)
    assert error.value.code() == code and error.value.details() == message


def test_metadata_lists_every_signature_def_of_the_saved_model(stub, model_zoo):
    from serving.saved_model import read_signature_defs

    for model, path in model_zoo.items():
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        signatures = get_model_metadata_pb2.SignatureDefMap()
        stub.GetModelMetadata(request, timeout=60).metadata["signature_def"].Unpack(signatures)
        assert dict(signatures.signature_def) == read_signature_defs(str(path))


# ---------------------------------------------------------------- the fast path


def signature_cases():
    """Valid inputs for every signature of every model kind, as numpy arrays."""
    return {
        "half_plus_two": {"serving_default": {"x": X}, "regress_x2_to_y3": {"inputs": X},
                          "classify_x_to_y": {"inputs": string_array(hpt_examples())},
                          "regress_x_to_y": {"inputs": string_array(hpt_examples())},
                          "regress_x_to_y2": {"inputs": string_array(hpt_examples())}},
        "tf2_module": {"serving_default": {"features": FEATURES, "color": string_array([c.encode() for c in COLORS]),
                                           "count": np.array(COUNTS, np.int64)},
                       "text": {"text": string_array([t.encode() for t in TEXTS]),
                                "repeat": np.array([1, 2, 3], np.int32)},
                       "classify": {"inputs": string_array(tf2_examples())},
                       "regress": {"inputs": string_array(tf2_examples())},
                       "half": {"h": np.array([0.5, -2.0], np.float16)},
                       "scalar": {"v": np.array([1.0, 2.5], np.float32)},
                       "ragged_batch": {"v": np.array([1.0, 2.5], np.float32)},
                       "bad_scores": {"inputs": string_array([b"1.5", b"-2"])},
                       "wide_regression": {"inputs": string_array([b"1.5", b"-2"])},
                       "int_regression": {"inputs": string_array([b"15", b"-2"])},
                       "spin": {"iterations": np.array([100, 3], np.int64)},
                       "batch_view": {"v": FEATURES}},
        "estimator": {key: {"inputs": string_array(estimator_examples())}
                      for key in ("serving_default", "classification", "regression")}
        | {"predict": {"examples": string_array(estimator_examples())}},
        "tfxline": {"serving_default": {"examples": string_array(models.tiny_examples())},
                    "serving_raw": {"miles": np.array([1.0, 0.0], np.float32), "hour": np.array([2, 9], np.int64),
                                    "payment": string_array([b"Cash", b""]), "fare": np.array([3.0, 0.0], np.float32)}},
    }


def test_the_fast_path_equals_the_public_calls_on_every_signature_of_every_model_kind(model_zoo, own, monkeypatch):
    """Session::MakeCallable (private, the default on TF 2.16), the public Session callable
    (TFXLINE_SPEEDUPS=0) and the model's own signature functions (tf.saved_model.load) agree
    exactly."""
    fast = {name: load_saved_model(name, 1, str(path)) for name, path in model_zoo.items()}
    monkeypatch.setenv(SPEEDUPS_ENV, "0")
    public = {name: load_saved_model(name, 1, str(path)) for name, path in model_zoo.items()}
    assert all(s._fast for s in fast.values()) and not any(s._fast for s in public.values())
    checked = 0
    for model, signatures in signature_cases().items():
        assert set(signatures) | {"__saved_model_init_op", "transform_features"} >= set(fast[model].signatures)
        for signature, inputs in signatures.items():
            expected = own(model, signature, **inputs)
            for servable in (fast[model], public[model]):
                outputs = servable.run(signature, inputs)
                assert set(outputs) == set(expected)
                for alias, value in expected.items():
                    assert outputs[alias].dtype == value.dtype or value.dtype == object
                    assert_same(outputs[alias], value)
                checked += 1
    assert checked == 2 * sum(len(s) for s in signature_cases().values())


def test_with_speedups_off_the_server_answers_byte_for_byte_the_same(model_zoo, zoo_server, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(zoo_config(model_zoo))
    public = Server([f"--model_config_file={config}"], tmp_path, env={SPEEDUPS_ENV: "0"})
    bodies = [("half_plus_two", "predict", {"instances": X.tolist()}),
              ("half_plus_two", "classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}),
              ("tf2_module", "predict", {"inputs": {"features": FEATURES.tolist(), "color": COLORS, "count": COUNTS}}),
              ("estimator", "classify", {"examples": [{"x": 0.5, "color": "red"}]}),
              ("tfxline", "predict", {"signature_name": "serving_raw", "instances": [
                  {"miles": 1.5, "hour": 2, "payment": "Cash", "fare": 3.0}]})]
    try:
        public.wait_ready("/v1/models/tfxline")
        for model, verb, body in bodies:
            answers = [requests.post(f"{server.url}/v1/models/{model}:{verb}", data=json.dumps(body), timeout=60)
                       for server in (zoo_server, public)]
            assert answers[0].status_code == answers[1].status_code == 200
            assert answers[0].content == answers[1].content
    finally:
        public.stop()


def test_a_failure_inside_the_server_is_internal_not_the_clients_fault(model_zoo):
    """The bug this file started from: the flat call's TypeError ('Signature specifies 6
    arguments, got: 5') was answered 400, blaming the client. A failure that is not a
    TensorFlow status is now INTERNAL: 500 over REST, INTERNAL over gRPC."""
    import asyncio

    from serving.inference import InferenceService
    from serving.metrics import Metrics
    from serving.registry import ModelRegistry, ModelSpec
    from serving.rest import RestOptions, start_rest_server
    from serving.grpc_api import start_grpc_server
    from tests.serving.conftest import free_port

    registry = ModelRegistry(load_saved_model)
    registry.configure([ModelSpec("half_plus_two", str(model_zoo["half_plus_two"].parent))])

    def broken(feeds, fetches):
        def call(*arrays):
            raise TypeError("Signature specifies 6 arguments, got: 5")
        return call

    registry.resolve("half_plus_two")._callable = broken
    rest_port, grpc_port = free_port(), free_port()
    answers = {}

    async def run():
        service = InferenceService(registry, Metrics())
        rest = await start_rest_server(service, RestOptions(), rest_port)
        grpc_server = await start_grpc_server(service, grpc_port)
        loop = asyncio.get_running_loop()
        answers["rest"] = await loop.run_in_executor(None, lambda: requests.post(
            f"http://127.0.0.1:{rest_port}/v1/models/half_plus_two:predict", json={"instances": [[1.0]]}, timeout=30))

        def call_grpc():
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                try:
                    prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                        predict_request("half_plus_two", "", x=X), timeout=30)
                except grpc.RpcError as error:
                    return error

        answers["grpc"] = await loop.run_in_executor(None, call_grpc)
        await grpc_server.stop(0)
        await rest.drain(0)

    asyncio.run(run())
    assert answers["rest"].status_code == 500
    assert answers["rest"].json() == {"error": "TypeError: Signature specifies 6 arguments, got: 5"}
    assert answers["grpc"].code() == grpc.StatusCode.INTERNAL
    assert answers["grpc"].details() == "TypeError: Signature specifies 6 arguments, got: 5"
