"""Error answers byte for byte as TF Serving writes them. Each expected text is written here
from the format strings in TF Serving's source (paths relative to tensorflow_serving/ in
github.com/tensorflow/serving), or in TensorFlow's and rapidjson's where TF Serving passes their
messages on; the comment names the place. REST bodies are checked whole, as rapidjson's
PrettyWriter lays them out: {"error": ...} with four-space indentation."""
import json

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

# SignatureDef::DebugString() of half_plus_two's serving_default and regress_x_to_y, as
# SavedModelBuilder writes them (servables/tensorflow/testdata/saved_model_half_plus_two.py).
HPT_PREDICT = """inputs {
  key: "x"
  value {
    name: "x:0"
    dtype: DT_FLOAT
    tensor_shape {
      dim {
        size: -1
      }
      dim {
        size: 1
      }
    }
  }
}
outputs {
  key: "y"
  value {
    name: "y:0"
    dtype: DT_FLOAT
    tensor_shape {
      dim {
        size: -1
      }
      dim {
        size: 1
      }
    }
  }
}
method_name: "tensorflow/serving/predict"
"""
HPT_REGRESS = """inputs {
  key: "inputs"
  value {
    name: "tf_example:0"
    dtype: DT_STRING
    tensor_shape {
      dim {
        size: -1
      }
    }
  }
}
outputs {
  key: "outputs"
  value {
    name: "y:0"
    dtype: DT_FLOAT
    tensor_shape {
      dim {
        size: -1
      }
      dim {
        size: 1
      }
    }
  }
}
method_name: "tensorflow/serving/regress"
"""
ELEMENT = "Failed to process element: {} of 'instances' list. Error: INVALID_ARGUMENT: {}"  # json_tensor.cc:584-586
KEYED = "Failed to process element: {} key: {} of 'instances' list. Error: INVALID_ARGUMENT: {}"  # json_tensor.cc:563-565
ROW = {"features": [1.0, 2.0], "color": "red", "count": 1}

REST_CASES = [
    # (model, verb or GET path, body, HTTP status, message); util/json_tensor.cc unless noted.
    ("half_plus_two", "predict", "", 400, "JSON Parse error: The document is empty"),  # :474-476
    # :487-489 with rapidjson's GetParseError_En texts and byte offsets (rapidjson/error/en.h)
    ("half_plus_two", "predict", "   ", 400, "JSON Parse error: The document is empty. at offset: 3"),
    ("half_plus_two", "predict", "{bad json", 400, "JSON Parse error: Missing a name for object member. at offset: 1"),
    ("half_plus_two", "predict", '{"instances": [1.0,]}', 400, "JSON Parse error: Invalid value. at offset: 19"),
    ("half_plus_two", "predict", '{"a": 1 "b": 2}', 400,
     "JSON Parse error: Missing a comma or '}' after an object member. at offset: 8"),
    ("half_plus_two", "predict", '{"a": [1 2]}', 400,
     "JSON Parse error: Missing a comma or ']' after an array element. at offset: 9"),
    ("half_plus_two", "predict", '{"a": "\\q"}', 400, "JSON Parse error: Invalid escape character in string. at offset: 7"),
    ("half_plus_two", "predict", '{"a": 1.}', 400, "JSON Parse error: Miss fraction part in number. at offset: 8"),
    ("half_plus_two", "predict", '{"a": 1e999}', 400, "JSON Parse error: Number too big to be stored in double. at offset: 6"),
    ("half_plus_two", "predict", "[1, 2]", 400, "JSON Value: [1, 2] Is not object"),  # :498-500
    ("half_plus_two", "predict", {"signature_name": 5, "instances": [[1.0]]}, 400,  # :280-283
     'JSON Value: {\n    "signature_name": 5,\n    "instances": [[1.0]]\n} not formatted correctly. '
     "'signature_name' key must be a string value."),
    ("half_plus_two", "predict", {"signature_name": "nope", "instances": [[1.0]]}, 400,
     'Serving signature name: "nope" not found in signature def'),  # model_servers/http_rest_api_handler.cc:250-252
    ("half_plus_two", "predict", {"instances": [["a"]]}, 400,  # :262-267
     ELEMENT.format(0, 'JSON Value: "a" Type: String is not of expected type: float')),
    ("half_plus_two", "predict", {"instances": [[True]]}, 400,
     ELEMENT.format(0, "JSON Value: true Type: True is not of expected type: float")),
    ("half_plus_two", "predict", {"instances": [[1.0], [1.0, 2.0]]}, 400,  # :462-464
     ELEMENT.format(1, "Expecting tensor size: 1 but got: 2")),
    ("half_plus_two", "predict", {"instances": [[1.0], [[2.0]]]}, 400,  # :465-468, shapes as [1,1]
     ELEMENT.format(1, "Expecting shape [1] but got: [1,1]")),
    ("half_plus_two", "predict", {"instances": [[1.0], 2.0]}, 400, ELEMENT.format(1, "Expecting shape [1] but got: []")),
    ("half_plus_two", "predict", {"inputs": [[1.0], 2.0]}, 400,  # :398-403
     "JSON Value: 2.0 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ("half_plus_two", "predict", {"inputs": [[1.0], [2.0, 3.0]]}, 400,  # :422-428
     "Encountered list at unexpected size: 2 at level: 1 expected size: 1"),
    ("half_plus_two", "predict", {"inputs": [[1.0], [[2.0]]]}, 400,  # :416-420
     "Encountered list at unexpected level: 2 expected < 2"),
    ("half_plus_two", "predict", {"instances": 1.0}, 400,  # :683-686
     'JSON Value: {\n    "instances": 1.0\n} Expecting \'instances\' to be an list/array'),
    ("half_plus_two", "predict", {"instances": []}, 400,  # :687-690
     'JSON Value: {\n    "instances": []\n} No values in \'instances\' array'),
    ("half_plus_two", "predict", {"foo": 1}, 400, "Missing 'inputs' or 'instances' key"),  # :704
    ("half_plus_two", "predict", {"inputs": [1.0], "instances": [1.0]}, 400,  # :678-682, trailing space included
     'JSON Value: {\n    "inputs": [1.0],\n    "instances": [1.0]\n} Not formatted correctly expecting only one of '
     "'inputs' or 'instances' keys to exist "),
    ("tf2_module", "predict", {"instances": [{"features": [1.0, 2.0], "color": "red"}]}, 400,  # :568-572
     "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"features\": [1.0, 2.0],\n    "
     "\"color\": \"red\"\n} keys must be equal to: color,count,features"),
    ("tf2_module", "predict", {"instances": [{**ROW, "n": 1}]}, 400,  # :447-450 inside :563-565
     KEYED.format(0, "n", "JSON object: does not have named input: n")),
    ("tf2_module", "predict", {"instances": [ROW, [1]]}, 400,  # :552-554
     "Expecting object but got list at item 1 of input list"),
    ("tf2_module", "predict", {"instances": [1]}, 400,  # :526-529
     "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
     "tensorinfo_map"),
    ("tf2_module", "predict", {"inputs": [1]}, 400,  # :618-621
     "inputs is a plain value/list, but expecting an object as multiple input tensors required as per tensorinfo_map"),
    ("tf2_module", "predict", {"inputs": {"features": [[1.0, 2.0]], "color": ["red"]}}, 400,  # :633-636
     "Missing named input: count in 'inputs' object."),
    ("tf2_module", "predict", {"instances": [{**ROW, "count": True}]}, 400,
     KEYED.format(0, "count", "JSON Value: true Type: True is not of expected type: int64")),
    ("tf2_module", "predict", {"signature_name": "text", "instances": [{"text": {"b64": "%%%"}, "repeat": 1}]}, 400,
     KEYED.format(0, "text", "Unable to base64 decode")),  # :385-386
    ("tf2_module", "predict", {"signature_name": "text", "instances": [{"text": {"b64": "aGk=", "x": 1}, "repeat": 1}]},
     400, KEYED.format(0, "text", 'JSON Value: {\n    "b64": "aGk=",\n    "x": 1\n} not formatted correctly for base64 '
                                  "data")),  # :269-271
    ("tf2_module", "predict", {"signature_name": "text", "instances": [{"text": "a", "repeat": 1.5}]}, 400,
     KEYED.format(0, "repeat", "JSON Value: 1.5 Type: Number is not of expected type: int32")),
    # :336-339: UNIMPLEMENTED (501) as such in the columnar format, wrapped as INVALID_ARGUMENT in rows
    ("tf2_module", "predict", {"signature_name": "half", "inputs": [1.0]}, 501,
     "Conversion of JSON Value: 1.0 to type: half"),
    ("tf2_module", "predict", {"signature_name": "half", "instances": [1.0]}, 400,
     "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: Conversion of JSON Value: 1.0 to type: "
     "half"),
    ("tf2_module", "predict", {"signature_name": "scalar", "instances": [1.0, 2.0]}, 400,  # :985-988
     "Tensor name: sum has no shape information "),
    ("tf2_module", "predict", {"signature_name": "ragged_batch", "instances": [1.0, 2.0, 3.0]}, 400,  # :990-995
     "Tensor name: twice has inconsistent batch size: 6 expecting: 3"),
    ("half_plus_two", "regress", {"signature_name": "regress_x_to_y"}, 400,  # :838-841 (says classify for regress too)
     'JSON Value: {\n    "signature_name": "regress_x_to_y"\n} When method is classify, key \'examples\' is expected '
     "and was not found"),
    ("half_plus_two", "regress", {"examples": {}}, 400,  # :843-846
     'JSON Value: {\n    "examples": {}\n} Expecting \'examples\' value to be an list/array'),
    ("half_plus_two", "classify", {"examples": []}, 400,  # :848-850
     'JSON Value: {\n    "examples": []\n} \'examples\' value is an empty array'),
    ("half_plus_two", "regress", {"examples": [{"x": [1, 1.0]}]}, 400,  # :714-732
     "Unexpected element type in feature: x expecting type: int64"),
    ("half_plus_two", "regress", {"examples": [{"x": None}]}, 400,  # :740-743
     "Feature: x has element with unexpected JSON type: Null"),
    ("half_plus_two", "regress", {"examples": [{"x": [[1.0]]}]}, 400,  # :763-766
     "Feature: x has element with unexpected JSON type: Array"),
    ("half_plus_two", "regress", {"examples": [{"x": 18446744073709551615}]}, 400,  # :784-787
     "Feature: x has uint64_t element. Only int64_t is supported."),
    ("half_plus_two", "regress", {"examples": [1]}, 400, "Example must be JSON object but got JSON Number"),  # :798-800
    ("half_plus_two", "regress", {"examples": [{"x": 1.0}]}, 400,  # servables/tensorflow/regressor.cc:186-190
     "No regression inputs found in SignatureDef: " + HPT_PREDICT),
    ("half_plus_two", "classify", {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}, 400,
     'Expected classification signature outputs to contain at least one of "classes" or "scores". Signature was: '
     + HPT_REGRESS),  # servables/tensorflow/classifier.cc:234-240
    ("half_plus_two", "classify", {"signature_name": "nope", "examples": [{"x": 1.0}]}, 400,
     "No signature was found with the name: nope"),  # servables/tensorflow/classifier.cc:217-219
    ("half_plus_two", "PREDICT", {"instances": [[1.0]]}, 400,  # model_servers/http_rest_api_handler.cc:59-60
     "Malformed request: POST /v1/models/half_plus_two:PREDICT"),
    ("nope", "predict", {"instances": [[1.0]]}, 404, "Servable not found for request: Latest(nope)"),
    ("half_plus_two/versions/9", "predict", {"instances": [[1.0]]}, 404,
     "Servable not found for request: Specific(half_plus_two, 9)"),
    ("half_plus_two/labels/beta", "predict", {"instances": [[1.0]]}, 400,  # model_servers/server_core.cc:890-891
     "Unrecognized servable version label: beta"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),  # model_servers/http_rest_api_handler.cc:190
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),  # get_model_status_impl.cc
    ("GET", "/v1/models/half_plus_two/versions/7", None, 404, "Could not find version 7 of model half_plus_two"),
    ("GET", "/v1/models/half_plus_two/versions/99999999999999999999", None, 400,  # http_rest_api_util.cc:115-118
     "Failed to convert version: 99999999999999999999 to numeric."),
]


def rest_call(server, model, verb, body):
    if model == "GET":
        return requests.get(server.url + verb, timeout=60)
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(f"{server.url}/v1/models/{model}:{verb}", data=data.encode(), timeout=60)


@pytest.mark.parametrize("model, verb, body, status, message", REST_CASES,
                         ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None)
def test_rest_error_texts(zoo_server, model, verb, body, status, message):
    response = rest_call(zoo_server, model, verb, body)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    # model_servers/http_rest_api_util.cc MakeJsonFromStatus: rapidjson's escaping (quotes,
    # backslashes, control characters), nothing else.
    escaped = message.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    assert response.text == '{\n    "error": "' + escaped + '"\n}'
    assert response.json()["error"] == message


@pytest.mark.parametrize("signature, verb, message", [
    # servables/tensorflow/classifier.cc:302-306 and regressor.cc:239-259
    ("bad_scores", "classify", "Expected Tensor shape: [batch_size num_classes] but got [1]"),
    ("wide_regression", "regress", "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but "
                                   "got [1,2]"),
    ("int_regression", "regress", "Expected output Tensor of DT_FLOAT.  Got: DT_INT64"),
])
def test_output_checks_of_classify_and_regress(zoo_server, signature, verb, message):
    response = rest_call(zoo_server, "tf2_module", verb, {"signature_name": signature, "examples": [{"x": 1.0}]})
    assert response.status_code == 400 and response.json()["error"] == message


def test_the_metrics_path_with_a_query_is_refused_as_tf_serving_refuses_it(zoo_server):
    # model_servers/http_server.cc:95-98
    response = requests.get(zoo_server.url + "/monitoring/prometheus/metrics?x=1", timeout=60)
    assert response.status_code == 400 and response.headers["Content-Type"] == "text/plain"
    assert response.text == "Unexpected path: /monitoring/prometheus/metrics?x=1. Should be /monitoring/prometheus/metrics"


def test_a_cors_preflight_without_origin_is_400_with_no_body(zoo_server):
    # model_servers/http_server.cc:156-163: FAILED_PRECONDITION, and no JSON body for OPTIONS
    response = requests.options(zoo_server.url + "/v1/models/half_plus_two:predict", timeout=60)
    assert response.status_code == 400 and response.content == b""


# ---------------------------------------------------------------- gRPC


@pytest.fixture(scope="module")
def channel(zoo_server):
    with grpc.insecure_channel(f"127.0.0.1:{zoo_server.grpc_port}") as opened:
        yield opened


def predict(model="half_plus_two", signature="", **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = model, signature
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value))
    return request


ONE = np.ones([1, 1], np.float32)
SHORT_CONTENT = tf.make_tensor_proto(np.ones([2, 1], np.float32))
SHORT_CONTENT.tensor_shape.dim[0].size = 3  # tensor_content holds 2 of the 3 declared values

GRPC_PREDICT_CASES = [
    (predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),  # predictor
    (predict(model="", x=ONE), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),  # server_core.cc:844
    (predict(model="nope", x=ONE), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    (predict(signature="nope", x=ONE), grpc.StatusCode.FAILED_PRECONDITION,  # servables/tensorflow/predict_util.cc:80-83
     'Serving signature key "nope" not found.'),
    (predict(x=ONE, z=ONE), grpc.StatusCode.INVALID_ARGUMENT,  # predict_util.cc:37-58
     "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. Missing but required: {}."),
    (predict(z=ONE), grpc.StatusCode.INVALID_ARGUMENT,  # tensorflow/cc/saved_model/util.cc GetInputValues
     "Signature input alias: x(feed name: x:0) not found in request and no default value provided. Inputs expected "
     "to be in the request {z}, or default input alias set: "),
    (predict(x=np.array([["a"]])), grpc.StatusCode.INVALID_ARGUMENT,  # tensorflow's FunctionCallFrame::SetArgs
     "Expects arg[0] to be float but string is provided"),
    (predict(x=SHORT_CONTENT), grpc.StatusCode.INVALID_ARGUMENT,  # tensorflow/cc/saved_model/util.cc
     "tensor parsing error: x"),
]


@pytest.mark.parametrize("request_, code, message", GRPC_PREDICT_CASES)
def test_grpc_predict_error_texts(channel, request_, code, message):
    with pytest.raises(grpc.RpcError) as error:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request_, timeout=60)
    assert (error.value.code(), error.value.details()) == (code, message)


def test_grpc_output_filter_errors(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for aliases, message in ((["q"], "output tensor alias not found in signature: q Outputs expected to be in the set "
                                      "{y}."),  # predict_util.cc:134-141
                             (["y", "y"], "duplicate output tensor alias: y")):  # predict_util.cc:143-147
        request = predict(x=ONE)
        request.output_filter.extend(aliases)
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(request, timeout=60)
        assert (error.value.code(), error.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_long_grpc_messages_are_truncated_at_1024_characters(channel):
    # model_servers/grpc_status_util.cc: the first 1024 characters, then "...TRUNCATED"
    name = "s" * 2000
    with pytest.raises(grpc.RpcError) as error:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict(signature=name, x=ONE), timeout=60)
    assert error.value.details() == ('Serving signature key "' + name + '" not found.')[:1024] + "...TRUNCATED"


def test_grpc_classify_regress_metadata_and_status_error_texts(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models_stub = model_service_pb2_grpc.ModelServiceStub(channel)

    def refused(call, request):
        with pytest.raises(grpc.RpcError) as error:
            call(request, timeout=60)
        return error.value.code(), error.value.details()

    empty = regression_pb2.RegressionRequest()
    empty.model_spec.name, empty.model_spec.signature_name = "half_plus_two", "regress_x_to_y"
    # servables/tensorflow/util.cc:160-163, after the signature checks
    assert refused(stub.Regress, empty) == (grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
    empty.model_spec.signature_name = "nope"
    assert refused(stub.Regress, empty) == (grpc.StatusCode.INVALID_ARGUMENT, "No signature was found with the name: nope")
    assert refused(stub.Classify, classification_pb2.ClassificationRequest()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")  # classification_service.cc:38-42

    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "half_plus_two"
    # servables/tensorflow/get_model_metadata_impl.cc:35-46
    assert refused(stub.GetModelMetadata, metadata) == (
        grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
    metadata.metadata_field.append("other")
    assert refused(stub.GetModelMetadata, metadata) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                        "Metadata field other is not supported")

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "nope"  # model_servers/get_model_status_impl.cc
    assert refused(models_stub.GetModelStatus, status) == (grpc.StatusCode.NOT_FOUND,
                                                           "Could not find any versions of model nope")
    status.model_spec.name = "half_plus_two"
    status.model_spec.version.value = 7
    assert refused(models_stub.GetModelStatus, status) == (grpc.StatusCode.NOT_FOUND,
                                                           "Could not find version 7 of model half_plus_two")
    reload = model_management_pb2.ReloadConfigRequest()
    reload.config.custom_model_config.Pack(tf.compat.v1.ConfigProto())  # model_servers/model_service_impl.cc:64-66
    assert refused(models_stub.HandleReloadConfigRequest, reload) == (
        grpc.StatusCode.INVALID_ARGUMENT, "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                                          "ModelConfigList is currently supported")
