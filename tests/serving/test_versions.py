"""Version handling under load: new versions replace old ones with no failed request, broken
versions never take over, labels follow models.config, and version policies choose what loads."""
import shutil
import threading

import pytest
import requests

from serving.registry import ModelRegistry, ModelSpec
from serving.saved_model import load_saved_model
from tests.serving.conftest import build_half_plus, models_config, Server, wait_until


def publish(source, base, version):
    """As the Pusher does: copy to a non-numeric name, then rename into place."""
    staging = base / f".incoming-{version}"
    shutil.copytree(source, staging)
    staging.rename(base / str(version))


class Load:
    """Clients calling predict in a loop; every answer and status code is kept."""

    def __init__(self, url, clients=4):
        self.url, self.stop = url, threading.Event()
        self.answers, self.failures = [], []
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self):
        session = requests.Session()
        while not self.stop.is_set():
            try:
                response = session.post(self.url, json={"instances": [[1.0]]}, timeout=10)
                if response.status_code == 200:
                    self.answers.append(response.json()["predictions"][0][0])
                else:
                    self.failures.append(response.text)
            except requests.RequestException as error:
                self.failures.append(str(error))

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_hot_reload_under_load_drops_no_request_and_ignores_broken_versions(half_plus_models, tmp_path):
    base = tmp_path / "half_plus_two"
    base.mkdir()
    publish(half_plus_models / "1", base, 1)
    server = Server([f"--model_base_path={base}", "--model_name=half_plus_two", "--file_system_poll_wait_seconds=1"],
                    tmp_path)
    try:
        server.wait_ready("/v1/models/half_plus_two")
        load = Load(server.url + "/v1/models/half_plus_two:predict")
        wait_until(lambda: len(load.answers) > 50)
        publish(half_plus_models / "2", base, 2)
        wait_until(lambda: load.answers[-1] == 3.5)
        seen = len(load.answers)
        broken = base / ".incoming-3"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"half-written")
        broken.rename(base / "3")
        status = wait_until(lambda: next((s for s in requests.get(server.url + "/v1/models/half_plus_two").json()[
            "model_version_status"] if s["version"] == "3" and s["state"] == "END"), None), timeout=30)
        wait_until(lambda: len(load.answers) > seen + 50)
        load.finish()
        assert load.failures == []
        assert set(load.answers) == {2.5, 3.5}
        assert load.answers.index(3.5) > 0 and 2.5 not in load.answers[load.answers.index(3.5):]
        assert status["status"]["error_code"] != "OK" and "version 3" in status["status"]["error_message"]
        states = {s["version"]: s["state"] for s in requests.get(server.url + "/v1/models/half_plus_two").json()[
            "model_version_status"]}
        assert states == {"3": "END", "2": "AVAILABLE", "1": "END"}
        assert "Failed to load version 3" in server.log()
    finally:
        server.stop()


def test_labels_follow_the_polled_config_file(half_plus_models, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(models_config(half_plus_models, labels={"stable": 1}, versions=[1, 2]))
    server = Server([f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"], tmp_path)
    try:
        server.wait_ready("/v1/models/half_plus_two/labels/stable/metadata")
        stable = server.url + "/v1/models/half_plus_two/labels/stable:predict"
        assert requests.post(stable, json={"instances": [[1.0]]}).json() == {"predictions": [[2.5]]}
        config.write_text(models_config(half_plus_models, labels={"stable": 2}, versions=[1, 2]))
        wait_until(lambda: requests.post(stable, json={"instances": [[1.0]]}).json() == {"predictions": [[3.5]]})
        # A label on a version that is not loaded is refused, and the old labels keep working.
        config.write_text(models_config(half_plus_models, labels={"stable": 7}, versions=[1, 2]))
        wait_until(lambda: "not currently available for inference" in server.log())
        assert requests.post(stable, json={"instances": [[1.0]]}).json() == {"predictions": [[3.5]]}
    finally:
        server.stop()


@pytest.mark.parametrize("policy, loaded", [
    (("latest", 1), [3]), (("latest", 2), [2, 3]), (("all",), [1, 2, 3]), (("specific", (1, 3)), [1, 3]),
])
def test_version_policies(half_plus_models, tmp_path, policy, loaded):
    base = tmp_path / "m"
    for version in (1, 2):
        shutil.copytree(half_plus_models / str(version), base / str(version))
    build_half_plus(base / "3", 4.0)
    (base / "not-a-version").mkdir()
    registry = ModelRegistry(load_saved_model)
    registry.configure([ModelSpec("m", str(base), policy)])
    available = sorted(v for v, s in registry.status("m") if s.state == "AVAILABLE")
    assert available == loaded
    assert registry.resolve("m").version == max(loaded)


def test_reload_config_over_grpc_moves_labels_and_refuses_bad_configs(half_plus_models, tmp_path):
    import grpc
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    config = tmp_path / "models.config"
    config.write_text(models_config(half_plus_models, labels={"stable": 1}, versions=[1, 2]))
    server = Server([f"--model_config_file={config}"], tmp_path)
    try:
        server.wait_ready("/v1/models/half_plus_two/labels/stable/metadata")
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))

        def reload(text):
            request = model_management_pb2.ReloadConfigRequest()
            text_format.Parse(text, request.config)
            return stub.HandleReloadConfigRequest(request, timeout=60)

        reload(models_config(half_plus_models, labels={"stable": 2}, versions=[1, 2]))
        stable = server.url + "/v1/models/half_plus_two/labels/stable:predict"
        assert requests.post(stable, json={"instances": [[1.0]]}).json() == {"predictions": [[3.5]]}
        with pytest.raises(grpc.RpcError) as refused:
            reload(models_config("relative/path"))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "absolute path" in refused.value.details()
        assert requests.post(stable, json={"instances": [[1.0]]}).json() == {"predictions": [[3.5]]}
    finally:
        server.stop()
