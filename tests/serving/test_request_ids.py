"""Request ids against a real `tfxline serve` process: REST and gRPC answers carry one (the client's when it
is valid, else a new one), and the request log keeps it with each logged example."""
import re

import grpc
import numpy as np
import pytest
import requests as http
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from monitoring import requests
from serving.request_log import to_examples
from tests.serving.conftest import Server, wait_until

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def logging_server(half_plus_models, tmp_path_factory):
    directory = tmp_path_factory.mktemp("request_ids")
    running = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two",
                      f"--request_log_dir={directory / 'log'}", "--request_log_sample_rate=1.0"], directory)
    try:
        running.wait_ready("/v1/models/half_plus_two")
        yield running, directory / "log"
    finally:
        running.stop()


def _predict(server, instances, headers=None):
    return http.post(f"{server.url}/v1/models/half_plus_two:predict", json={"instances": instances},
                     headers=headers or {}, timeout=30)


def _grpc_predict(server, x, metadata=(), alias="x"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(np.array(x, np.float32)))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict.with_call(request, metadata=metadata, timeout=30)


def _read_log(directory, expected_rows):
    def complete():
        try:
            read = requests.read(str(directory), "half_plus_two", {"x": "numeric"})
        except requests.RequestLogError:
            return None
        return read if read.num_rows >= expected_rows else None
    return wait_until(complete, timeout=60)


def test_rest_and_grpc_answers_carry_an_id_that_the_log_keeps(logging_server):
    server, log_dir = logging_server
    mine = _predict(server, [[1.0], [2.0], [3.0]], {"X-Request-Id": "order-17:a"})
    assert mine.status_code == 200 and mine.headers["X-Request-Id"] == "order-17:a"
    new = _predict(server, [[4.0]])
    assert new.status_code == 200 and GENERATED.fullmatch(new.headers["X-Request-Id"])
    # An id a client should not send (spaces, too long) is replaced, never echoed.
    for bad in ("two words", "x" * 129):
        replaced = _predict(server, [[5.0]], {"X-Request-Id": bad})
        assert replaced.status_code == 200 and GENERATED.fullmatch(replaced.headers["X-Request-Id"])
    # A refused request has an id too, and the server keeps serving.
    refused = http.post(f"{server.url}/v1/models/half_plus_two:predict", data=b"{not json", timeout=30,
                        headers={"X-Request-Id": "broken-1"})
    assert refused.status_code == 400 and refused.headers["X-Request-Id"] == "broken-1"

    _, call = _grpc_predict(server, [[6.0], [7.0]], metadata=(("x-request-id", "grpc-9"),))
    assert dict(call.trailing_metadata())["x-request-id"] == "grpc-9"
    _, call = _grpc_predict(server, [[8.0]])
    grpc_generated = dict(call.trailing_metadata())["x-request-id"]
    assert GENERATED.fullmatch(grpc_generated)
    with pytest.raises(grpc.RpcError) as failed:
        _grpc_predict(server, [[1.0]], metadata=(("x-request-id", "grpc-bad-input"),), alias="z")
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(failed.value.trailing_metadata())["x-request-id"] == "grpc-bad-input"

    log = _read_log(log_dir, 9)
    logged = list(zip(log.ids.tolist(), log.request_rows.tolist(), log.columns["x"].values.tolist()))
    assert logged[:3] == [("order-17:a", 0, 1.0), ("order-17:a", 1, 2.0), ("order-17:a", 2, 3.0)]
    assert (new.headers["X-Request-Id"], 0, 4.0) in logged
    assert ("grpc-9", 0, 6.0) in logged and ("grpc-9", 1, 7.0) in logged
    assert (grpc_generated, 0, 8.0) in logged
    assert not {"broken-1", "grpc-bad-input"} & set(log.ids.tolist())  # failed requests are not logged
    assert len(set(log.ids.tolist())) == 6


def test_a_log_written_before_request_ids_still_reads(tmp_path):
    records = to_examples(3, {"x": np.array([[1.0], [2.0]], np.float32)}, {"y": np.array([[2.5], [3.0]], np.float32)},
                          1_700_000_000_000)
    with tf.io.TFRecordWriter(str(tmp_path / "old.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    old = requests.read(str(tmp_path / "old.tfrecord"), "half_plus_two", {"x": "numeric"})
    assert old.num_rows == 2 and old.versions.tolist() == [3, 3]
    assert old.ids.tolist() == ["", ""] and old.request_rows.tolist() == [-1, -1]


def test_samples_queued_at_shutdown_are_written(half_plus_models, tmp_path):
    """A SIGTERM right after a large request: the server answers it, then writes its samples before it exits
    (their labels may arrive later)."""
    server = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two",
                     f"--request_log_dir={tmp_path / 'log'}", "--request_log_sample_rate=1.0"], tmp_path)
    try:
        server.wait_ready("/v1/models/half_plus_two")
        answered = _predict(server, [[float(i)] for i in range(20000)], {"X-Request-Id": "last-before-stop"})
        assert answered.status_code == 200
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log()
    log = requests.read(str(tmp_path / "log"), "half_plus_two", {"x": "numeric"})
    assert log.num_rows == 20000 and set(log.ids.tolist()) == {"last-before-stop"}
    assert log.request_rows.tolist() == list(range(20000))


def test_requests_refused_from_their_headers_carry_an_id_too(half_plus_models, tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    server = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two",
                     f"--auth-token-file={tmp_path / 'token'}", "--max-request-bytes=1000"], tmp_path)
    try:
        server.wait_ready("/healthz")
        wrong = _predict(server, [[1.0]], {"X-Request-Id": "no-token-1", "Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["X-Request-Id"] == "no-token-1"
        large = _predict(server, [[1.0]] * 500, {"Authorization": "Bearer s3cret"})
        assert large.status_code == 413 and GENERATED.fullmatch(large.headers["X-Request-Id"])
        right = _predict(server, [[1.0]], {"X-Request-Id": "with-token", "Authorization": "Bearer s3cret"})
        assert right.status_code == 200 and right.headers["X-Request-Id"] == "with-token"
    finally:
        server.stop()

