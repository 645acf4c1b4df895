"""The registry as one state machine, on real SavedModels: a reload that drops a model stops it
serving even while a version poll is loading, a refused config changes nothing, versions that
stop serving are freed, and no load freezes the collector."""
import gc
import shutil
import threading
import weakref

import pytest

from serving.errors import ServingError
from serving.registry import ModelRegistry, ModelSpec
from serving.saved_model import load_saved_model
from tests.serving.conftest import build_half_plus


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Versions 1, 2, 3 of y = 0.5 x + b with b = 1, 2, 3."""
    base = tmp_path_factory.mktemp("versions")
    return {v: build_half_plus(base / str(v), float(v)) for v in (1, 2, 3)}


def place(versions, base, *numbers):
    base.mkdir(exist_ok=True)
    for number in numbers:
        shutil.copytree(versions[number], base / str(number))
    return str(base)


class GatedLoader:
    """load_saved_model, holding one (model, version) until released."""

    def __init__(self, gated):
        self.gated, self.reached, self.release = gated, threading.Event(), threading.Event()

    def __call__(self, name, version, path):
        if (name, version) == self.gated:
            self.reached.set()
            assert self.release.wait(60)
        return load_saved_model(name, version, path)


def answer(servable) -> float:
    import numpy as np

    return float(servable.run("serving_default", {"x": np.array([[1.0]], np.float32)})["y"][0, 0])


def test_a_model_dropped_by_a_reload_stops_serving_while_a_poll_is_loading(versions, tmp_path):
    a, b = place(versions, tmp_path / "a", 1), place(versions, tmp_path / "b", 1)
    loader = GatedLoader(("a", 2))
    registry = ModelRegistry(loader)
    registry.configure([ModelSpec("a", a), ModelSpec("b", b)])
    place(versions, tmp_path / "a", 2)
    poll = threading.Thread(target=registry.sync)
    poll.start()
    assert loader.reached.wait(60)  # the poll is loading a/2 and will visit b next
    reload = threading.Thread(target=registry.configure, args=([ModelSpec("a", a)],))
    reload.start()
    loader.release.set()
    poll.join(60)
    reload.join(60)
    with pytest.raises(ServingError) as dropped:
        registry.resolve("b")
    assert dropped.value.code == "NOT_FOUND"
    assert answer(registry.resolve("a")) == 2.5 and registry.model_names == ["a"]


def test_a_refused_config_changes_nothing(versions, tmp_path):
    base = place(versions, tmp_path / "m", 1, 2)
    registry = ModelRegistry(load_saved_model)
    registry.configure([ModelSpec("m", base, ("specific", (1, 2)), {"stable": 1})])
    (tmp_path / "m" / "3").mkdir()  # not a SavedModel: version 3 fails to load
    with pytest.raises(ServingError) as refused:
        registry.configure([ModelSpec("m", base, ("specific", (2, 3)), {"stable": 3})])
    assert refused.value.code == "FAILED_PRECONDITION"
    # The old config still serves as a whole: its label, and the version the new one dropped.
    assert answer(registry.resolve("m", label="stable")) == 1.5
    assert answer(registry.resolve("m", version=1)) == 1.5
    assert {v: s.state for v, s in registry.status("m")} == {2: "AVAILABLE", 1: "AVAILABLE"}


def test_loads_do_not_freeze_the_collector_and_replaced_versions_are_freed(versions, tmp_path):
    base = tmp_path / "m"
    place(versions, base, 1)
    registry = ModelRegistry(load_saved_model)
    frozen = gc.get_freeze_count()
    registry.configure([ModelSpec("m", str(base))])
    first = weakref.ref(registry.resolve("m"))
    for number in (2, 3):
        place(versions, base, number)
        registry.sync()
    assert answer(registry.resolve("m")) == 3.5
    assert gc.get_freeze_count() == frozen
    assert first() is None


def test_a_reload_over_grpc_loads_off_the_event_loop(half_plus_models, tmp_path):
    """HandleReloadConfigRequest adding a model whose load takes seconds: REST requests are
    answered meanwhile (before, the load ran on the event loop and they waited for it)."""
    import time

    import grpc
    import requests
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    from tests.serving import models
    from tests.serving.conftest import Server, models_config

    models.build_slow_loading(tmp_path / "slow" / "1", iterations=2_000_000)
    config = tmp_path / "models.config"
    config.write_text(models_config(half_plus_models))
    server = Server([f"--model_config_file={config}"], tmp_path)
    try:
        server.wait_ready("/v1/models/half_plus_two")
        both = models_config(half_plus_models) + models_config(tmp_path / "slow", name="slow")
        request = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(both.replace("} }\nmodel_config_list { config", "} config"), request.config)
        assert len(request.config.model_config_list.config) == 2
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        reload = threading.Thread(target=stub.HandleReloadConfigRequest, args=(request,), kwargs={"timeout": 120})
        reload.start()
        time.sleep(1.0)
        latencies = []
        for _ in range(5):
            started = time.monotonic()
            answer = requests.post(server.url + "/v1/models/half_plus_two:predict", json={"instances": [[1.0]]},
                                   timeout=60)
            latencies.append(time.monotonic() - started)
            assert answer.json() == {"predictions": [[3.5]]}
        assert max(latencies) < 1.0, latencies
        assert reload.is_alive(), "the slow model loaded before the requests could show anything"
        reload.join(120)
        slow = requests.post(server.url + "/v1/models/slow:predict", json={"instances": [[2.0]]}, timeout=60)
        assert slow.json() == {"predictions": [[3.0]]}
    finally:
        server.stop()
