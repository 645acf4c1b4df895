"""Small SavedModels built in the test (TF Serving's half_plus_two, with classify and regress
signatures) and a real `tfxline serve` process on loopback ports."""
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import TFXLINE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_half_plus(path: Path, offset: float) -> Path:
    """y = 0.5 x + offset, under the signature names and aliases of TF Serving's test model."""
    import tensorflow as tf

    def parse_x(serialized):
        spec = {"x": tf.io.FixedLenFeature([1], tf.float32), "x2": tf.io.FixedLenFeature([1], tf.float32, [0.0])}
        return tf.io.parse_example(serialized, spec)["x"]

    class HalfPlus(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def predict(self, x):
            return {"y": 0.5 * x + offset}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs):
            return {"scores": 0.5 * parse_x(inputs) + offset}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            return {"outputs": 0.5 * parse_x(inputs) + offset}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec([None], tf.int64, name="count")])
        def strings(self, text, count):
            return {"echo_bytes": text, "length": tf.strings.length(text) + tf.cast(count, tf.int32) * 0}

    module = HalfPlus()
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.predict, "classify_x_to_y": module.classify,
        "regress_x_to_y": module.regress, "strings": module.strings})
    return path


def models_config(base_path: Path, name: str = "half_plus_two", labels=None, versions=None) -> str:
    policy = ("model_version_policy { specific { " + " ".join(f"versions: {v}" for v in versions) + " } }"
              if versions else "")
    label_lines = " ".join(f'version_labels {{ key: "{k}" value: {v} }}' for k, v in (labels or {}).items())
    return (f'model_config_list {{ config {{ name: "{name}" base_path: "{base_path}" model_platform: "tensorflow" '
            f"{policy} {label_lines} }} }}\n")


class Server:
    def __init__(self, args, cwd: Path, env=None, rest_port: int = None, grpc_port: int = None):
        self.rest_port, self.grpc_port = rest_port or free_port(), grpc_port or free_port()
        self.log_path = cwd / f"server-{self.rest_port}.log"
        command = [TFXLINE, "serve", f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}", *args]
        self.process = subprocess.Popen(command, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                        cwd=str(cwd), env={**os.environ, **(env or {})})
        self.url = f"http://127.0.0.1:{self.rest_port}"

    def wait_ready(self, path: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                if requests.get(self.url + path, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready after {timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def half_plus_models(tmp_path_factory):
    """Versions 1 (y = 0.5x + 2) and 2 (y = 0.5x + 3) of one model."""
    base = tmp_path_factory.mktemp("models") / "half_plus_two"
    build_half_plus(base / "1", 2.0)
    build_half_plus(base / "2", 3.0)
    return base


@pytest.fixture(scope="session")
def server(half_plus_models, tmp_path_factory):
    """A server with labels (stable -> 1, canary -> 2), metrics and batching on."""
    directory = tmp_path_factory.mktemp("server")
    (directory / "models.config").write_text(models_config(half_plus_models, labels={"stable": 1, "canary": 2},
                                                           versions=[1, 2]))
    (directory / "monitoring.config").write_text(
        'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
    (directory / "batching.txt").write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 1000 }\n"
                                            "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n")
    running = Server([f"--model_config_file={directory / 'models.config'}",
                      f"--monitoring_config_file={directory / 'monitoring.config'}", "--enable_batching",
                      f"--batching_parameters_file={directory / 'batching.txt'}"], directory)
    try:
        running.wait_ready("/v1/models/half_plus_two")
        yield running
    finally:
        running.stop()


def wait_until(condition, timeout: float = 60, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


@pytest.fixture(scope="session")
def model_zoo(tmp_path_factory):
    """The four kinds of export in tests/serving/models.py, each as version 1 of its own model."""
    from tests.serving import models

    root = tmp_path_factory.mktemp("zoo")
    paths = {
        "half_plus_two": models.build_half_plus_two(root / "half_plus_two" / "1"),
        "tf2_module": models.build_tf2_module(root / "tf2_module" / "1"),
        "estimator": models.build_estimator_style(root / "estimator" / "1"),
        "tfxline": models.build_tfxline_export(root / "tfxline" / "1", root / "tfxline_work"),
    }
    return paths


def zoo_config(paths) -> str:
    entries = "".join(f'config {{ name: "{name}" base_path: "{path.parent}" model_platform: "tensorflow" }} '
                      for name, path in paths.items())
    return f"model_config_list {{ {entries}}}\n"


@pytest.fixture(scope="session")
def zoo_server(model_zoo, tmp_path_factory):
    """One server for the whole zoo, batching on, metrics at the usual path."""
    directory = tmp_path_factory.mktemp("zoo_server")
    (directory / "models.config").write_text(zoo_config(model_zoo))
    (directory / "batching.txt").write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 500 }\n")
    (directory / "monitoring.config").write_text('prometheus_config { enable: true }\n')
    server = Server([f"--model_config_file={directory / 'models.config'}", "--enable_batching",
                     f"--batching_parameters_file={directory / 'batching.txt'}",
                     f"--monitoring_config_file={directory / 'monitoring.config'}"], directory)
    try:
        server.wait_ready("/v1/models/tfxline")
        yield server
    finally:
        server.stop()
