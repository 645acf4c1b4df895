"""`tfxline edge serve` on a published TFLite model of a real Trainer: TF Serving's REST API,
answers matching the SavedModel, bad requests refused, versions swapped only when they verify."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from serving import layout
from serving.edge import runtime
from tests.helpers import TFXLINE, example_rows, split_examples
from tests.serving.conftest import free_port, wait_until


@pytest.fixture(scope="module")
def device(tiny_model, tmp_path_factory):
    """A copy of the published edge directory (so tests can publish more) and a server on it."""
    edge_dir = tmp_path_factory.mktemp("device") / "edge"
    shutil.copytree(os.path.dirname(tiny_model.edge_base), edge_dir)
    port = free_port()
    log_path = edge_dir.parent / "edge-serve.log"
    process = subprocess.Popen([TFXLINE, "edge", "serve", "--edge-dir", str(edge_dir),
                                "--model-name", "taxi", f"--rest_api_port={port}",
                                "--file_system_poll_wait_seconds=0.5"],
                               stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1/models/taxi"
    try:
        wait_until(lambda: _ready(url), timeout=60)
        yield edge_dir / "taxi", url, log_path
    finally:
        process.terminate()
        process.wait(timeout=20)


def _ready(url):
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def _rows(tiny_model, base, limit=40):
    model = runtime.load_newest(str(base))
    defaults = {item["name"]: item["default"] for item in model.inputs}
    examples = split_examples(tiny_model.examples_uri, "eval", limit)
    rows = [{**defaults, **row} for row in example_rows(examples, set(defaults))]
    rows[0]["payment_type"] = "Bitcoin"  # unseen: the out-of-vocabulary bucket, as in the SavedModel
    return model, rows


def test_predictions_match_the_saved_model(tiny_model, device):
    import tensorflow as tf

    base, url, _ = device
    model, rows = _rows(tiny_model, base)
    version_dir = os.path.join(tiny_model.serving_base, tiny_model.version)
    expected = tf.saved_model.load(version_dir).signatures["serving_raw"](**{
        name: tf.constant(values) for name, values in runtime.to_columns(rows, model.inputs).items()})["scores"].numpy()
    by_row = requests.post(url + ":predict", json={"signature_name": "serving_raw", "instances": rows}).json()
    np.testing.assert_allclose(np.array(by_row["predictions"]), expected, atol=1e-4)
    columns = {item["name"]: [row[item["name"]] for row in rows] for item in model.inputs}
    by_column = requests.post(url + ":predict", json={"inputs": columns}).json()
    np.testing.assert_allclose(np.array(by_column["outputs"]), expected, atol=1e-4)


@pytest.mark.parametrize("change, status, message", [
    (lambda row: row.update(fare="twelve"), 400, "is not of expected type: float"),
    (lambda row: row.update(trip_start_hour=7.5), 400, "is not of expected type: int64"),
    (lambda row: row.pop("company"), 400, "keys must be equal to"),
    (lambda row: row.update(tip=1.0), 400, "does not have named input: tip"),
])
def test_bad_requests_get_tf_serving_errors_and_the_server_keeps_serving(tiny_model, device, change, status, message):
    base, url, _ = device
    _, rows = _rows(tiny_model, base, limit=2)
    change(rows[1])
    response = requests.post(url + ":predict", json={"instances": rows})
    assert response.status_code == status and message in response.json()["error"]
    assert requests.post(url + ":predict", json={"instances": rows[:1]}).status_code == 200
    assert requests.post(url + "/versions/1:predict", json={"instances": rows[:1]}).status_code == 404
    assert requests.post(url + ":predict", data="{oops").status_code == 400


def test_classify_on_the_edge_is_refused_as_tf_serving_refuses_a_signature_without_examples(device):
    _, url, _ = device
    response = requests.post(url + ":classify", json={"examples": [{"fare": 1.0}]})
    # classifier.cc's PreProcessClassification: a classify signature has one input, `inputs`.
    assert response.status_code == 400 and response.json()["error"] == "Expected one input Tensor."


def test_inputs_of_the_wrong_rank_are_refused(tiny_model, device):
    base, url, _ = device
    model, rows = _rows(tiny_model, base, limit=2)
    columns = {item["name"]: [[row[item["name"]]] for row in rows] for item in model.inputs}
    response = requests.post(url + ":predict", json={"inputs": columns})
    assert response.status_code == 400 and "one value per example" in response.json()["error"]


def _publish_copy(base, source_version, version, corrupt=False):
    staging = base / f".incoming-{version}"
    shutil.copytree(base / str(source_version), staging)
    if corrupt:
        data = (staging / "model.tflite").read_bytes()
        (staging / "model.tflite").write_bytes(data[:-100] + bytes(100))
    staging.rename(base / str(version))


def test_versions_swap_only_when_their_hashes_verify(tiny_model, device):
    base, url, log_path = device
    good = layout.versions(str(base))[-1]
    _, rows = _rows(tiny_model, base, limit=1)
    _publish_copy(base, good, good + 1, corrupt=True)
    wait_until(lambda: "sha256 does not match the manifest" in log_path.read_text(), timeout=30)
    response = requests.post(url + ":predict", json={"instances": rows})
    assert response.status_code == 200
    statuses = {s["version"]: s["state"] for s in requests.get(url).json()["model_version_status"]}
    assert statuses[str(good)] == "AVAILABLE" and statuses[str(good + 1)] == "END"
    _publish_copy(base, good, good + 2)
    wait_until(lambda: {s["version"]: s["state"] for s in requests.get(url).json()["model_version_status"]}.get(
        str(good + 2)) == "AVAILABLE", timeout=30)
    time.sleep(1)
    answer = requests.post(url + "/versions/%d:predict" % (good + 2), json={"instances": rows})
    assert answer.status_code == 200
    assert answer.json() == response.json()


def test_the_edge_server_imports_no_tensorflow():
    code = ("import sys, serving.edge.serve, serving.rest, serving.inference, serving.registry; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
