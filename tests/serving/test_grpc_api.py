"""TF Serving's gRPC services against a real `tfxline serve` process, with the stubs from the
tensorflow-serving-api package that TF Serving's own clients use."""
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as opened:
        yield opened


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(model="half_plus_two", signature="", version=None, label=None, **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def example(**features):
    proto = tf.train.Example()
    for name, value in features.items():
        proto.features.feature[name].float_list.value.append(value)
    return proto


def test_predict_by_version_label_and_latest(predictions):
    x = np.array([[1.0], [3.0]], np.float32)  # make_tensor_proto sends tensor_content
    by_version = predictions.Predict(predict_request(version=1, x=x), timeout=10)
    assert tf.make_ndarray(by_version.outputs["y"]).tolist() == [[2.5], [3.5]]
    assert by_version.outputs["y"].float_val == [2.5, 3.5]  # typed fields, as TF Serving answers
    assert (by_version.model_spec.name, by_version.model_spec.version.value,
            by_version.model_spec.signature_name) == ("half_plus_two", 1, "serving_default")
    assert predictions.Predict(predict_request(label="canary", x=x), timeout=10).outputs["y"].float_val == [3.5, 4.5]
    assert predictions.Predict(predict_request(x=x), timeout=10).model_spec.version.value == 2


def test_predict_with_typed_value_fields_and_output_filter(predictions):
    request = predict_request(signature="strings", version=1)
    request.inputs["text"].dtype = tf.string.as_datatype_enum
    request.inputs["text"].tensor_shape.dim.add(size=2)
    request.inputs["text"].string_val.extend([b"abc", b"d"])
    request.inputs["count"].CopyFrom(tf.make_tensor_proto(np.array([1, 2], np.int64)))
    request.output_filter.append("length")
    response = predictions.Predict(request, timeout=10)
    assert list(response.outputs) == ["length"]
    assert list(response.outputs["length"].int_val) == [3, 1]


@pytest.mark.parametrize("request_, code, message", [
    (predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    (predict_request(model="", x=np.ones([1, 1], np.float32)), grpc.StatusCode.INVALID_ARGUMENT,
     "ModelSpec has no name specified."),
    (predict_request(model="nope", x=np.ones([1, 1], np.float32)), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    (predict_request(version=5, x=np.ones([1, 1], np.float32)), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(half_plus_two, 5)"),
    (predict_request(label="beta", x=np.ones([1, 1], np.float32)), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: beta"),
    (predict_request(signature="nope", x=np.ones([1, 1], np.float32)), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
    (predict_request(x=np.ones([1, 1], np.float32), z=np.ones([1, 1], np.float32)), grpc.StatusCode.INVALID_ARGUMENT,
     "input size does not match signature: 2!=1"),
    (predict_request(z=np.ones([1, 1], np.float32)), grpc.StatusCode.INVALID_ARGUMENT,
     "Signature input alias: x(feed name: serving_default_x:0) not found in request and no default value provided. "
     "Inputs expected to be in the request {z}, or default input alias set: "),
    (predict_request(x=np.array([["a"]])), grpc.StatusCode.INVALID_ARGUMENT,
     "Expects arg[0] to be float but string is provided"),
])
def test_predict_errors_have_tf_serving_codes(predictions, request_, code, message):
    with pytest.raises(grpc.RpcError) as error:
        predictions.Predict(request_, timeout=10)
    assert error.value.code() == code
    assert message in error.value.details()


def test_classify_and_regress(predictions):
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name, classify.model_spec.signature_name = "half_plus_two", "classify_x_to_y"
    classify.model_spec.version.value = 1
    classify.input.example_list.examples.extend([example(x=1.0), example(x=3.0)])
    result = predictions.Classify(classify, timeout=10).result
    assert [[(c.label, c.score) for c in row.classes] for row in result.classifications] == [[("", 2.5)], [("", 3.5)]]

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name, regress.model_spec.signature_name = "half_plus_two", "regress_x_to_y"
    regress.model_spec.version.value = 1
    regress.input.example_list_with_context.context.CopyFrom(example(x=4.0))
    regress.input.example_list_with_context.examples.extend([example(x2=1.0), example(x=2.0)])
    assert [r.value for r in predictions.Regress(regress, timeout=10).result.regressions] == [4.0, 3.0]

    regress.input.Clear()
    with pytest.raises(grpc.RpcError) as error:
        predictions.Regress(regress, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "Input is empty." in error.value.details()


def test_model_metadata(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half_plus_two"
    response = predictions.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert response.model_spec.version.value == 2
    assert signatures.signature_def["serving_default"].inputs["x"].dtype == tf.float32.as_datatype_enum
    request.metadata_field[:] = ["other"]
    with pytest.raises(grpc.RpcError) as error:
        predictions.GetModelMetadata(request, timeout=10)
    assert "Metadata field other is not supported" in error.value.details()


def test_model_status(channel):
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    response = models.GetModelStatus(request, timeout=10)
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE), (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as error:
        models.GetModelStatus(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("value, dtype", [
    (np.array([[1.5, 2.0], [3.0, -4.0]], np.float32), "DT_FLOAT"),  # tensor_content
    (np.array([7, 8, 9], np.int64), "DT_INT64"),
    (np.array([b"a", b"bc"], object), "DT_STRING"),
    (np.array(2.5, np.float64), "DT_DOUBLE"),
])
def test_tensor_protos_read_as_tf_reads_them(value, dtype):
    from serving.grpc_api import from_tensor_proto, to_tensor_proto

    for proto in (tf.make_tensor_proto(value), to_tensor_proto(value)):  # tensor_content and typed fields
        assert types_pb2.DataType.Name(proto.dtype) == dtype
        np.testing.assert_array_equal(from_tensor_proto(proto, "x", 1 << 20), tf.make_ndarray(proto))
    filled = tf.make_tensor_proto(1.0, dtype=tf.float32, shape=[2, 2])  # one value fills the shape
    np.testing.assert_array_equal(from_tensor_proto(filled, "x", 1 << 20), np.ones([2, 2], np.float32))
