"""Options for deployments outside a trusted network and for drift monitoring: TLS on REST and
gRPC with the client verifying the certificate, and the sampled request log."""
import glob
import re
import subprocess

import pytest
import requests
import tensorflow as tf

from serving.client import ServingClient
from tests.serving.conftest import Server, wait_until


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(directory / "key.pem"),
                    "-out", str(directory / "cert.pem")], check=True, capture_output=True)
    return directory / "cert.pem", directory / "key.pem"


def test_tls_on_rest_and_grpc(half_plus_models, certificate, tmp_path):
    cert, key = certificate
    server = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two",
                     f"--ssl_cert_file={cert}", f"--ssl_key_file={key}"], tmp_path)
    try:
        def ready():
            try:
                return requests.get(f"https://localhost:{server.rest_port}/v1/models/half_plus_two", verify=str(cert),
                                    timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(ready, timeout=120)
        for protocol in ("rest", "grpc"):
            client = ServingClient("half_plus_two", host="localhost", rest_port=server.rest_port,
                                   grpc_port=server.grpc_port, protocol=protocol, signature_name="serving_default",
                                   tls=True, ca_file=str(cert))
            assert client.predict([{"x": [1.0]}]).tolist() == [[3.5]]  # latest: version 2
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://localhost:{server.rest_port}/v1/models/half_plus_two", timeout=5)  # untrusted CA
    finally:
        server.stop()


def test_request_log_keeps_a_sample_as_tf_examples(half_plus_models, tmp_path):
    server = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two",
                     f"--request_log_dir={tmp_path / 'requests'}", "--request_log_sample_rate=1.0",
                     "--request_log_max_bytes=2000"], tmp_path)
    try:
        server.wait_ready("/v1/models/half_plus_two")
        client = ServingClient("half_plus_two", host="127.0.0.1", rest_port=server.rest_port,
                               signature_name="serving_default")
        for value in range(40):
            client.predict([{"x": [float(value)]}])

        def logged():
            files = sorted(glob.glob(str(tmp_path / "requests" / "*")))
            try:
                return files if sum(1 for _ in tf.data.TFRecordDataset(files)) == 40 else None
            except (tf.errors.NotFoundError, tf.errors.DataLossError):  # rotated or being written meanwhile
                return None

        # Every sample is written once the log holds all 40; at 2,000 bytes a file, some rotated.
        files = wait_until(logged, timeout=30)
    finally:
        server.stop()
    examples = [tf.train.Example.FromString(record.numpy()) for record in tf.data.TFRecordDataset(files)]
    assert len(examples) == 40
    features = [e.features.feature for e in examples]
    assert all(f["model_version"].int64_list.value == [2] for f in features)
    assert all(f["y"].float_list.value[0] == 0.5 * f["x"].float_list.value[0] + 3 for f in features)
    assert len(files) > 1 and all(re.fullmatch(r".*/half_plus_two\.requests\.tfrecord(\.\d+)?", f) for f in files)
