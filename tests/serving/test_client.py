"""The inspection software's client against a real server over loopback: REST and gRPC,
retries, canary split and shadow comparison; and the pipeline's pushed taxi model served
from the models.config the Pusher writes."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from serving.client import CanaryClient, PredictionError, ServingClient, ShadowClient
from tests.helpers import example_rows, split_examples
from tests.serving.conftest import free_port, Server


@pytest.fixture(params=["rest", "grpc"])
def client(request, server):
    return ServingClient("half_plus_two", host="127.0.0.1", rest_port=server.rest_port, grpc_port=server.grpc_port,
                         protocol=request.param, signature_name="serving_default")


def test_predict_by_label_and_version(client):
    rows = [{"x": [1.0]}, {"x": [3.0]}]
    assert client.predict(rows, label="stable").tolist() == [[2.5], [3.5]]
    assert client.predict(rows, version=2).tolist() == [[3.5], [4.5]]
    assert client.predict(rows).tolist() == [[3.5], [4.5]]


def test_client_errors_are_not_retried_and_a_dead_server_is(client):
    with pytest.raises(PredictionError) as refused:
        client.predict([{"x": [1.0]}], version=9)
    assert "Servable not found" in refused.value.message
    dead = ServingClient("half_plus_two", host="127.0.0.1", rest_port=free_port(), grpc_port=free_port(),
                         protocol=client.protocol, signature_name="serving_default", retries=2, backoff=0.01,
                         timeout=1)
    with pytest.raises(PredictionError) as unavailable:
        dead.predict([{"x": [1.0]}], label="stable")
    assert unavailable.value.status == "UNAVAILABLE" and "3 attempts" in unavailable.value.message


def test_canary_gets_its_share_of_traffic(server):
    client = ServingClient("half_plus_two", host="127.0.0.1", rest_port=server.rest_port,
                           signature_name="serving_default")
    canary = CanaryClient(client, canary_share=0.2, seed=1)
    answers = [canary.predict([{"x": [1.0]}]) for _ in range(400)]
    share = sum(label == "canary" for _, label in answers) / len(answers)
    assert abs(share - 0.2) < 0.06
    # Each answer came from the version its label points at (stable -> 1, canary -> 2).
    assert all(float(scores[0, 0]) == (3.5 if label == "canary" else 2.5) for scores, label in answers)


def test_shadow_answers_from_stable_and_logs_disagreements(server, tmp_path):
    client = ServingClient("half_plus_two", host="127.0.0.1", rest_port=server.rest_port,
                           signature_name="serving_default")
    shadow = ShadowClient(client, tolerance=0.5, disagreement_log=str(tmp_path / "disagreements.jsonl"))
    answers = [shadow.predict([{"x": [float(i)]}]) for i in range(10)]
    shadow.close()
    assert [float(a[0, 0]) for a in answers] == [0.5 * i + 2 for i in range(10)]
    lines = [json.loads(line) for line in (tmp_path / "disagreements.jsonl").read_text().splitlines()]
    assert shadow.compared == 10 and shadow.disagreements == 10 == len(lines)
    assert all(line["canary"][0] - line["stable"][0] == 1.0 for line in lines)


@pytest.fixture(scope="module")
def taxi_server(tiny_model, tmp_path_factory):
    serving_dir = os.path.dirname(tiny_model.serving_base)
    running = Server([f"--model_config_file={os.path.join(serving_dir, 'models.local.config')}", "--enable_batching"],
                     tmp_path_factory.mktemp("taxi_server"))
    try:
        running.wait_ready("/v1/models/taxi/labels/stable/metadata")
        yield running
    finally:
        running.stop()


def test_the_pushed_taxi_model_answers_as_the_saved_model_does(tiny_model, taxi_server):
    version_dir = os.path.join(tiny_model.serving_base, tiny_model.version)
    with open(os.path.join(version_dir, "assets.extra", "raw_features.json")) as handle:
        inputs = json.load(handle)
    defaults = {item["name"]: item["default"] for item in inputs}
    examples = split_examples(tiny_model.examples_uri, "eval", 50)
    rows = [{**defaults, **row} for row in example_rows(examples, set(defaults))]
    signature = tf.saved_model.load(version_dir).signatures["serving_raw"]
    expected = signature(**{item["name"]: tf.constant([row[item["name"]] for row in rows], tf.as_dtype(item["dtype"]))
                            for item in inputs})["scores"].numpy()
    for protocol in ("rest", "grpc"):
        client = ServingClient("taxi", host="127.0.0.1", rest_port=taxi_server.rest_port,
                               grpc_port=taxi_server.grpc_port, protocol=protocol)
        scores = client.predict(rows, label="stable")
        np.testing.assert_allclose(scores, expected, atol=1e-6)
        assert ((scores >= 0) & (scores <= 1)).all()
