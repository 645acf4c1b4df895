"""TF Serving's REST API, request by request, against a real `tfxline serve` process: the
expected bodies, status codes and messages are the ones TF Serving documents and tests."""
import gzip
import json
import re
import time

import pytest
import requests

from tests.serving.conftest import build_half_plus, models_config, Server


def post(server, path, body, **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url + path, data=data, timeout=30, **kwargs)


@pytest.mark.parametrize("path, body, expected", [
    ("/versions/1:predict", {"instances": [[1.0], [2.0], [5.0]]}, {"predictions": [[2.5], [3.0], [4.5]]}),
    ("/versions/1:predict", {"inputs": [[1.0], [2.0]]}, {"outputs": [[2.5], [3.0]]}),
    ("/versions/1:predict", {"instances": [{"x": [1.0]}]}, {"predictions": [[2.5]]}),
    ("/versions/1:predict", {"signature_name": "", "inputs": {"x": [[1.0]]}}, {"outputs": [[2.5]]}),
    ("/versions/2:predict", {"instances": [[1.0]]}, {"predictions": [[3.5]]}),
    ("/labels/stable:predict", {"instances": [[1.0]]}, {"predictions": [[2.5]]}),
    ("/labels/canary:predict", {"instances": [[1.0]]}, {"predictions": [[3.5]]}),
    ("/versions/1:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}, {"x": 3.0}]},
     {"results": [[["", 2.5]], [["", 3.5]]]}),
    ("/versions/1:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}, {"results": [2.5]}),
    ("/versions/1:regress", {"signature_name": "regress_x_to_y", "context": {"x": 4.0}, "examples": [{"x2": 1.0}]},
     {"results": [4.0]}),
    (":predict", {"signature_name": "strings", "instances": [{"text": {"b64": "aGVsbG8="}, "count": 1}]},
     {"predictions": [{"echo_bytes": {"b64": "aGVsbG8="}, "length": 5}]}),
    (":predict", {"signature_name": "strings", "inputs": {"text": ["ab", "c"], "count": [1, 2]}},
     {"outputs": {"echo_bytes": [{"b64": "YWI="}, {"b64": "Yw=="}], "length": [2, 1]}}),
], ids=lambda value: value if isinstance(value, str) else None)
def test_inference_answers_as_tf_serving(server, path, body, expected):
    response = post(server, "/v1/models/half_plus_two" + path, body)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == expected


def test_latest_is_the_highest_available_version(server):
    response = post(server, "/v1/models/half_plus_two:predict", {"instances": [[1.0]]})
    assert response.json() == {"predictions": [[3.5]]}


def test_float_formatting_and_trailing_content(server):
    # Whole floats get ".0"; anything after the first JSON value is ignored, as rapidjson does;
    # the layout is rapidjson's PrettyWriter's, as TF Serving writes it.
    response = post(server, "/v1/models/half_plus_two/versions/1:predict", '{"instances": [[2.0]]} trailing')
    assert response.status_code == 200
    assert response.text == '{\n    "predictions": [[3.0]\n    ]\n}'


def test_gzip_request_bodies_are_accepted(server):
    body = gzip.compress(json.dumps({"instances": [[1.0]]}).encode())
    response = post(server, "/v1/models/half_plus_two/versions/1:predict", body,
                    headers={"Content-Encoding": "gzip"})
    assert response.json() == {"predictions": [[2.5]]}


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1/models/nope:predict", {"instances": [[1.0]]}, 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/half_plus_two/versions/9:predict", {"instances": [[1.0]]}, 404,
     "Servable not found for request: Specific(half_plus_two, 9)"),
    ("POST", "/v1/models/half_plus_two/labels/beta:predict", {"instances": [[1.0]]}, 400,
     "Unrecognized servable version label: beta"),
    ("POST", "/v1/models/nope:predict", "{bad json", 400, "JSON Parse error: Missing a name for object member."),
    ("POST", "/v1/models/half_plus_two:predict", "", 400, "JSON Parse error: The document is empty"),
    ("POST", "/v1/models/half_plus_two:predict", "[1, 2]", 400, "Is not object"),
    ("POST", "/v1/models/half_plus_two:predict", {"instances": [["a"]]}, 400, "is not of expected type: float"),
    ("POST", "/v1/models/half_plus_two:predict", {"instances": [[1.0], [1.0, 2.0]]}, 400, "Expecting tensor size"),
    ("POST", "/v1/models/half_plus_two:predict", {"instances": [[1.0], 2.0]}, 400, "Expecting shape [1] but got: []"),
    ("POST", "/v1/models/half_plus_two:predict", {"inputs": [[1.0], 2.0]}, 400, "found at incorrect level"),
    ("POST", "/v1/models/half_plus_two:predict", {"inputs": [[1.0], [2.0, 3.0]]}, 400,
     "Encountered list at unexpected size"),
    ("POST", "/v1/models/half_plus_two:predict", {"instances": 1.0}, 400, "Expecting 'instances' to be an list/array"),
    ("POST", "/v1/models/half_plus_two:predict", {"instances": []}, 400, "No values in 'instances' array"),
    ("POST", "/v1/models/half_plus_two:predict", {"foo": 1}, 400, "Missing 'inputs' or 'instances' key"),
    ("POST", "/v1/models/half_plus_two:predict", {"inputs": [1.0], "instances": [1.0]}, 400,
     "expecting only one of 'inputs' or 'instances' keys to exist"),
    ("POST", "/v1/models/half_plus_two:predict", {"signature_name": 5, "instances": [[1.0]]}, 400,
     "'signature_name' key must be a string value."),
    ("POST", "/v1/models/half_plus_two:predict", {"signature_name": "nope", "instances": [[1.0]]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", "/v1/models/half_plus_two:predict", {"signature_name": "strings", "instances": [{"text": "a"}]}, 400,
     "keys must be equal to: count,text"),
    ("POST", "/v1/models/half_plus_two:predict", {"signature_name": "strings", "instances": [{"text": "a", "n": 1}]},
     400, "does not have named input: n"),
    ("POST", "/v1/models/half_plus_two:predict", {"signature_name": "strings", "inputs": {"text": ["a"]}}, 400,
     "Missing named input: count in 'inputs' object."),
    ("POST", "/v1/models/half_plus_two:predict", {"signature_name": "strings", "instances": ["a"]}, 400,
     "instances is a plain list, but expecting list of objects"),
    ("POST", "/v1/models/half_plus_two:predict", {"signature_name": "strings", "instances": [
        {"text": {"b64": "%%%"}, "count": 1}]}, 400, "Unable to base64 decode"),
    ("POST", "/v1/models/half_plus_two:predict", {"signature_name": "strings", "instances": [
        {"text": "a", "count": 1.5}]}, 400, "is not of expected type: int64"),
    ("POST", "/v1/models/half_plus_two:regress", {"signature_name": "regress_x_to_y"}, 400,
     "When method is classify, key 'examples' is expected and was not found"),
    ("POST", "/v1/models/half_plus_two:regress", {"signature_name": "regress_x_to_y", "examples": []}, 400,
     "'examples' value is an empty array"),
    ("POST", "/v1/models/half_plus_two:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": [1, 1.0]}]},
     400, "Unexpected element type in feature: x"),
    ("POST", "/v1/models/half_plus_two:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": None}]},
     400, "has element with unexpected JSON type: Null"),
    ("POST", "/v1/models/half_plus_two:regress", {"examples": [{"x": 1.0}]}, 400,
     "No regression inputs found in SignatureDef: inputs {"),
    ("POST", "/v1/models/half_plus_two:classify", {"signature_name": "nope", "examples": [{"x": 1.0}]}, 400,
     "No signature was found with the name: nope"),
    ("POST", "/v1/models/half_plus_two:PREDICT", {"instances": [[1.0]]}, 400,
     "Malformed request: POST /v1/models/half_plus_two:PREDICT"),
    ("POST", "/v1/models/half_plus_two/versions/1/labels/stable:predict", {"instances": [[1.0]]}, 400,
     "Malformed request"),
    ("PUT", "/v1/models/half_plus_two:predict", {"instances": [[1.0]]}, 400, "Malformed request: PUT"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/half_plus_two/versions/7", None, 404, "Could not find version 7 of model half_plus_two"),
    ("GET", "/v1/models/half_plus_two/versions/99999999999999999999", None, 400, "Failed to convert version"),
    ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
    ("GET", "/v1/models/half_plus_two/labels/beta/metadata", None, 400, "Unrecognized servable version label: beta"),
])
def test_errors_have_tf_serving_codes_and_messages(server, method, path, body, status, message):
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    response = requests.request(method, server.url + path, data=data, timeout=30)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    # The server keeps serving after every bad request.
    assert post(server, "/v1/models/half_plus_two/versions/1:predict", {"instances": [[1.0]]}).status_code == 200


def test_model_status_lists_versions_newest_first(server):
    body = requests.get(server.url + "/v1/models/half_plus_two", timeout=10).json()
    assert body == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    one = requests.get(server.url + "/v1/models/half_plus_two/versions/1", timeout=10).json()
    assert [entry["version"] for entry in one["model_version_status"]] == ["1"]
    # TF Serving ignores a label on status requests and lists every version.
    by_label = requests.get(server.url + "/v1/models/half_plus_two/labels/anything", timeout=10).json()
    assert by_label == body


def test_metadata_shows_the_signature_defs(server):
    body = requests.get(server.url + "/v1/models/half_plus_two/labels/stable/metadata", timeout=10).json()
    assert body["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) >= {"serving_default", "classify_x_to_y", "regress_x_to_y", "strings"}
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
                                 "unknown_rank": False}
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"


def test_unknown_paths_are_404_outside_v1(server):
    assert requests.get(server.url + "/", timeout=10).status_code == 404
    assert requests.get(server.url + "/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200


def test_prometheus_metrics_count_requests_by_status_and_version(server):
    post(server, "/v1/models/half_plus_two/versions/1:predict", {"instances": [[1.0]]})
    post(server, "/v1/models/half_plus_two/versions/9:predict", {"instances": [[1.0]]})
    response = requests.get(server.url + "/monitoring/prometheus/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert "# HELP" not in text
    assert ':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"}' in text
    assert ':tensorflow:serving:request_count{model_name="half_plus_two",status="NOT_FOUND"}' in text
    assert ':tensorflow:serving:request_latency_bucket{model_name="half_plus_two",API="predict",entrypoint="REST",le="10"}' in text
    assert ':tfxline:serving:request_latency_by_version_count{model_name="half_plus_two",version="1",status="OK"}' in text
    assert ":tfxline:serving:batch_size_bucket" in text
    assert requests.get(server.url + "/monitoring/prometheus/metrics?x=1", timeout=10).status_code == 400


def test_cors_preflight(server):
    ok = requests.options(server.url + "/v1/models/half_plus_two:predict", headers={"Origin": "https://a.example"},
                          timeout=10)
    assert ok.status_code == 200 and ok.text == ""
    assert requests.options(server.url + "/v1/models/half_plus_two:predict", timeout=10).status_code == 400


def test_oversized_bodies_are_refused_and_auth_is_enforced(half_plus_models, tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    server = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two", "--max_request_bytes=2000",
                     f"--auth_token_file={tmp_path / 'token'}"], tmp_path)
    try:
        server.wait_ready("/healthz")
        headers = {"Authorization": "Bearer s3cret"}
        body = {"instances": [[1.0]] * 1000}
        too_big = post(server, "/v1/models/half_plus_two:predict", body, headers=headers)
        assert too_big.status_code == 413
        assert "--max_request_bytes" in too_big.json()["error"]
        denied = post(server, "/v1/models/half_plus_two:predict", {"instances": [[1.0]]})
        assert denied.status_code == 401 and "bearer token" in denied.json()["error"]
        wrong = post(server, "/v1/models/half_plus_two:predict", {"instances": [[1.0]]},
                     headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        fine = post(server, "/v1/models/half_plus_two:predict", {"instances": [[1.0]]}, headers=headers)
        assert fine.json() == {"predictions": [[3.5]]}
    finally:
        server.stop()


def test_a_model_that_fails_to_load_stops_startup(tmp_path):
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "saved_model.pb").write_bytes(b"not a saved model")
    server = Server([f"--model_base_path={tmp_path / 'broken'}", "--model_name=broken"], tmp_path)
    assert server.process.wait(timeout=120) == 1
    assert "Failed to start server. Error:" in server.log()


def test_a_bad_config_file_stops_startup_in_one_line(tmp_path):
    (tmp_path / "models.config").write_text("model_config_list { config { name: ")
    server = Server([f"--model_config_file={tmp_path / 'models.config'}"], tmp_path)
    assert server.process.wait(timeout=60) == 1
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in server.log()


def test_relative_base_paths_are_rejected(tmp_path):
    (tmp_path / "models.config").write_text(models_config("relative/path"))
    server = Server([f"--model_config_file={tmp_path / 'models.config'}"], tmp_path)
    assert server.process.wait(timeout=60) == 1
    assert "to have an absolute path or URI" in server.log()


def test_builder_makes_distinct_versions(tmp_path):
    """The fixture's two versions must differ, or the label and version tests prove nothing."""
    import tensorflow as tf

    one = tf.saved_model.load(str(build_half_plus(tmp_path / "1", 2.0)))
    two = tf.saved_model.load(str(build_half_plus(tmp_path / "2", 3.0)))
    x = tf.constant([[1.0]])
    assert float(one.signatures["serving_default"](x=x)["y"]) == 2.5
    assert float(two.signatures["serving_default"](x=x)["y"]) == 3.5


def test_worker_processes_share_the_port_and_report_metrics_together(half_plus_models, tmp_path):
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
    server = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two", "--workers=2",
                     f"--monitoring_config_file={monitoring}"], tmp_path)
    try:
        server.wait_ready("/v1/models/half_plus_two")
        import psutil

        assert len(psutil.Process(server.process.pid).children()) == 2
        sessions = [requests.Session() for _ in range(8)]  # separate connections reach both workers
        for index in range(200):
            response = sessions[index % 8].post(server.url + "/v1/models/half_plus_two:predict",
                                                json={"instances": [[1.0]]}, timeout=30)
            assert response.status_code == 200
        time.sleep(2.5)  # workers publish their metrics every second
        counted = [requests.get(server.url + "/monitoring/prometheus/metrics", timeout=10).text for _ in range(6)]
        pattern = re.compile(r':tensorflow:serving:request_count\{model_name="half_plus_two",status="OK"\} (\d+)')
        assert all(int(pattern.search(text).group(1)) >= 200 for text in counted)
    finally:
        server.stop()
    assert server.process.returncode == 0


def test_a_request_over_the_rest_timeout_gets_504_and_the_server_keeps_serving(half_plus_models, tmp_path):
    server = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two",
                     "--rest_api_timeout_in_ms=1"], tmp_path)
    try:
        server.wait_ready("/healthz")
        slow = post(server, "/v1/models/half_plus_two:predict", {"instances": [[1.0]] * 300_000})
        assert slow.status_code == 504 and "timed out" in slow.json()["error"]
        quick = post(server, "/v1/models/half_plus_two/metadata", "")
        assert quick.status_code == 400  # a POST to a GET path: still answered
        assert requests.get(server.url + "/v1/models/half_plus_two", timeout=10).status_code == 200
    finally:
        server.stop()
