"""The inspection PC's fallback client: a stream of requests while a real `tfxline serve` is stopped
and restarted is answered throughout, from the server or from the device's LiteRT model, with the
switches recorded and the answers the SavedModel's within the edge parity bound."""
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from serving.client import EDGE, SERVER, FallbackClient, PredictionError, ServingClient
from serving.edge.runtime import to_columns
from tests.helpers import example_rows, split_examples
from tests.serving.conftest import Server, free_port, models_config, wait_until


@pytest.fixture(scope="module")
def rows_and_expected(tiny_model):
    version_dir = os.path.join(tiny_model.serving_base, tiny_model.version)
    with open(os.path.join(version_dir, "assets.extra", "raw_features.json")) as handle:
        inputs = json.load(handle)
    rows = example_rows(split_examples(tiny_model.examples_uri, "eval", limit=60), {i["name"] for i in inputs})
    signature = tf.saved_model.load(version_dir).signatures["serving_raw"]
    expected = signature(**{name: tf.constant(values) for name, values in to_columns(rows, inputs).items()})
    return rows, expected["scores"].numpy()


def start_server(tiny_model, directory, rest_port=None, grpc_port=None) -> Server:
    serving_dir = os.path.dirname(tiny_model.serving_base)
    server = Server([f"--model_config_file={os.path.join(serving_dir, 'models.local.config')}"], directory,
                    rest_port=rest_port, grpc_port=grpc_port)
    server.wait_ready("/v1/models/taxi/labels/stable/metadata")
    return server


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_requests_are_answered_while_the_server_is_stopped_and_restarted(tiny_model, rows_and_expected, tmp_path,
                                                                         protocol):
    rows, expected = rows_and_expected
    max_diff = tiny_model.config.edge.max_score_diff
    server = start_server(tiny_model, tmp_path)
    client = FallbackClient(ServingClient("taxi", host="127.0.0.1", rest_port=server.rest_port,
                                          grpc_port=server.grpc_port, protocol=protocol, timeout=2, retries=0),
                            os.path.dirname(tiny_model.edge_base), retry_seconds=0.2, max_retry_seconds=1.0)
    answers = []

    def ask(count):
        for _ in range(count):
            index = len(answers) % len(rows)
            answers.append((index, client.predict([rows[index]])))

    try:
        ask(20)
        server.stop()
        ask(40)
        server = start_server(tiny_model, tmp_path, server.rest_port, server.grpc_port)
        wait_until(lambda: ask(5) or answers[-1][1].path == SERVER, timeout=60, interval=0.05)
        ask(20)
    finally:
        server.stop()
    paths = [answer.path for _, answer in answers]
    assert paths[:20] == [SERVER] * 20 and paths[20:60] == [EDGE] * 40 and paths[-20:] == [SERVER] * 20
    assert [switch["to"] for switch in client.switches] == [EDGE, SERVER]
    assert {answer.version for _, answer in answers} == {int(tiny_model.version)}
    for index, answer in answers:
        bound = 1e-6 if answer.path == SERVER else max_diff
        np.testing.assert_allclose(answer.scores[0], expected[index], atol=bound)
    assert client.version_mismatch is None


def _edge_copy(tiny_model, tmp_path, version: int) -> str:
    """The device's edge directory holding the tiny model's edge files under another version."""
    target = tmp_path / "edge" / "taxi" / str(version)
    shutil.copytree(os.path.join(tiny_model.edge_base, tiny_model.version), target)
    manifest = json.loads((target / "manifest.json").read_text())
    (target / "manifest.json").write_text(json.dumps({**manifest, "version": version}))
    return str(tmp_path / "edge")


@pytest.fixture(scope="module")
def two_version_server(tiny_model, tmp_path_factory):
    """Stable = the tiny model's version, with an older copy loaded next to it (the rollback target)."""
    directory = tmp_path_factory.mktemp("two_versions")
    stable = int(tiny_model.version)
    for version in (stable - 10, stable):
        shutil.copytree(os.path.join(tiny_model.serving_base, tiny_model.version), directory / "taxi" / str(version))
    (directory / "models.config").write_text(models_config(directory / "taxi", "taxi", {"stable": stable},
                                                           [stable - 10, stable]))
    server = Server([f"--model_config_file={directory / 'models.config'}"], directory)
    try:
        server.wait_ready("/v1/models/taxi/labels/stable/metadata")
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("offset, mismatch", [(0, False), (-10, False), (5, True), (-20, True)])
def test_the_edge_model_must_be_the_stable_version_or_its_predecessor(tiny_model, two_version_server, tmp_path,
                                                                      caplog, offset, mismatch):
    version = int(tiny_model.version) + offset
    client = FallbackClient(ServingClient("taxi", host="127.0.0.1", rest_port=two_version_server.rest_port,
                                          timeout=2, retries=0), _edge_copy(tiny_model, tmp_path, version))
    with caplog.at_level(logging.WARNING, logger="tfxline.client"):
        answer = client.predict([{"fare": 10.0}])
    assert (answer.path, answer.version) == (SERVER, int(tiny_model.version))
    assert (client.version_mismatch is not None) == mismatch
    if mismatch:
        assert f"is version {version}, neither the server's stable {tiny_model.version}" in caplog.text


def test_a_bad_request_is_the_callers_error_not_a_fallback(tiny_model, two_version_server):
    client = FallbackClient(ServingClient("taxi", host="127.0.0.1", rest_port=two_version_server.rest_port,
                                          timeout=2, retries=0), os.path.dirname(tiny_model.edge_base))
    with pytest.raises(PredictionError) as error:
        client.predict([{"fare": "twelve"}])
    assert error.value.status == 400 and client.switches == []


def test_the_fallback_path_imports_no_tensorflow(tiny_model):
    code = ("import json, sys; from serving.client import FallbackClient, ServingClient; "
            "client = FallbackClient(ServingClient('taxi', host='127.0.0.1', rest_port=int(sys.argv[1]), timeout=0.5, "
            "retries=0), sys.argv[2]); answer = client.predict([{'fare': 12.5, 'payment_type': 'Cash'}]); "
            "print(json.dumps({'path': answer.path, 'version': answer.version, 'switches': len(client.switches), "
            "'tensorflow': any(m.split('.')[0] == 'tensorflow' for m in sys.modules)}))")
    result = subprocess.run([sys.executable, "-c", code, str(free_port()), os.path.dirname(tiny_model.edge_base)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "path": EDGE, "version": int(tiny_model.version), "switches": 1, "tensorflow": False}
