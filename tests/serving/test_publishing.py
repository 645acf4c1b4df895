"""Publishing into the serving and edge directories (serving/layout.py), on local disk and on
TensorFlow's in-memory ram:// filesystem: a filesystem os calls cannot reach, with no directory
rename, which the layout handles as an object store. ram:// lives in one process, so those tests
run in-process; the local ones also run the installed `tfxline` command and racing processes."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from serving import layout, model_config, release, release_state
from serving.edge import runtime
from serving.registry import ModelRegistry
from serving.saved_model import load_saved_model
from serving.server import specs_from_config
from tests.conftest import write_config
from tests.serving.conftest import build_half_plus

ROOT = Path(__file__).resolve().parents[2]
TFXLINE = str(Path(sys.executable).parent / "tfxline")
SERVING_FILES = sorted([layout.BATCHING_PARAMETERS, layout.MODELS_CONFIG, layout.LOCAL_MODELS_CONFIG,
                        layout.MONITORING_CONFIG, layout.RELEASE_HISTORY, "half"])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Three SavedModels exported by TensorFlow: y = 0.5 x + 2, + 3 and + 4."""
    directory = tmp_path_factory.mktemp("models")
    return [build_half_plus(directory / f"plus_{offset}", float(offset)) for offset in (2, 3, 4)]


@pytest.fixture(scope="module")
def tflite_model():
    """A TFLite model of y = 0.5 x + 3 with one rank-1 input, as the edge runtime calls it."""

    class HalfPlusThree(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.reshape(0.5 * x + 3.0, [-1, 1])}

    module = HalfPlusThree()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    return converter.convert()


@pytest.fixture
def ram():
    return f"ram://{uuid.uuid4().hex}"


@pytest.fixture
def quick_object_lock(monkeypatch):
    """The object-store lock's settle time is for real stores' latency; ram:// answers at once."""
    monkeypatch.setattr(layout, "LOCK_SETTLE_SECONDS", 0.01)
    monkeypatch.setattr(layout, "LOCK_POLL_SECONDS", 0.01)


def _entry(path, name="half"):
    return model_config.find_model(model_config.read_model_server_config(path), name)


def _edge_files(tflite_model, extra=0):
    files = {layout.FLOAT_MODEL: tflite_model, layout.QUANTIZED_MODEL: tflite_model}
    files.update({f"extra-{index:03d}.bin": os.urandom(64) for index in range(extra)})
    inputs = [{"name": "x", "dtype": "float32", "default": 0.0}]
    return files, inputs


# ---- ram:// -------------------------------------------------------------------------------------

def test_pushes_to_ram_publish_loadable_versions_configs_and_history(models, ram, quick_object_lock):
    serving = f"{ram}/serving"
    base = f"{serving}/half"
    assert release_state.push(str(models[0]), base, now=1000.0) == "1000"
    assert release_state.push(str(models[1]), base, now=1000.0) == "1001"
    assert release_state.push(str(models[1]), base, now=5000.0) == "1001"  # the same model: nothing new

    assert not os.path.exists(serving.replace("ram://", "ram:/"))  # only TensorFlow's filesystem has it
    assert sorted(tf.io.gfile.listdir(serving)) == SERVING_FILES  # no lock or temporary objects left
    assert sorted(tf.io.gfile.listdir(base)) == ["1000", "1001"]
    assert layout.versions(base) == layout.saved_model_versions(base) == [1000, 1001]
    assert _same_content(models[1], f"{base}/1001")

    container = _entry(f"{serving}/models.config")
    assert (container.base_path, dict(container.version_labels)) == ("/models/half", {"stable": 1000, "canary": 1001})
    assert list(container.model_version_policy.specific.versions) == [1000, 1001]
    assert _entry(f"{serving}/models.local.config").base_path == base
    assert model_config.parse_monitoring_config(layout.read_text(f"{serving}/monitoring.config")) == (
        True, model_config.DEFAULT_METRICS_PATH)
    assert model_config.parse_batching_parameters(layout.read_text(f"{serving}/batching_parameters.txt"))[
        "max_batch_size"] == 64
    state = release_state.read_release(serving, "half")
    assert [(event["action"], event["version"]) for event in state.events] == [("push", 1000), ("push", 1001)]
    assert (state.stable_versions, state.versions_on_disk) == ([1000], [1000, 1001])

    # `tfxline serve`'s registry, on the ram:// base path that models.local.config names.
    registry = ModelRegistry(load_saved_model)
    registry.configure(specs_from_config(model_config.read_model_server_config(f"{serving}/models.local.config")))
    x = {"x": np.array([[2.0]], np.float32)}
    assert registry.resolve("half", label="stable").run("serving_default", x)["y"].tolist() == [[3.0]]
    assert registry.resolve("half", label="canary").run("serving_default", x)["y"].tolist() == [[4.0]]


def test_release_commands_move_the_labels_on_ram(models, ram, quick_object_lock, capsys):
    serving = f"{ram}/serving"
    for model in models:
        release_state.push(str(model), f"{serving}/half", now=1000.0)

    def run(*args):
        return release.main([*args, "--serving-dir", serving, "--model-name", "half"])

    assert run("promote") == 0
    assert dict(_entry(f"{serving}/models.config").version_labels) == {"stable": 1002}
    assert run("canary", "1001") == 0
    assert run("rollback") == 0
    assert dict(_entry(f"{serving}/models.config").version_labels) == {"stable": 1000, "canary": 1001}
    capsys.readouterr()
    assert run("status") == 0
    out = capsys.readouterr().out
    assert f"half in {serving}/models.config\n" in out
    assert "  stable    1000\n" in out and "  canary    1001\n" in out and "  on disk   1000, 1001, 1002\n" in out
    history = json.loads(layout.read_text(f"{serving}/release_history.json"))["half"]
    assert [event["action"] for event in history["events"]] == ["push", "push", "push", "promote", "canary",
                                                                 "rollback"]


def test_a_version_without_its_saved_model_pb_is_never_labelled(models, ram, quick_object_lock, capsys):
    """What an interrupted publish leaves on an object store: the files, but not saved_model.pb."""
    serving = f"{ram}/serving"
    release_state.push(str(models[0]), f"{serving}/half", now=1000.0)
    tf.io.gfile.makedirs(f"{serving}/half/1500/variables")
    with tf.io.gfile.GFile(f"{serving}/half/1500/variables/variables.index", "wb") as handle:
        handle.write(b"partial")
    assert release.main(["canary", "1500", "--serving-dir", serving, "--model-name", "half"]) == 1
    assert "version 1500 is not a directory under half/ with a complete SavedModel" in capsys.readouterr().err
    assert release.main(["status", "--serving-dir", serving, "--model-name", "half"]) == 0
    assert "  on disk   1000\n  incomplete 1500\n" in capsys.readouterr().out
    # The next push goes above it rather than into it.
    assert release_state.push(str(models[1]), f"{serving}/half", now=1000.0) == "1501"


def test_an_edge_version_on_ram_is_read_back_by_the_edge_runtime(tflite_model, ram, caplog):
    base = f"{ram}/edge/half"
    files, inputs = _edge_files(tflite_model)
    manifest = layout.build_manifest("1000", "half", inputs, "y", files, {"max_score_diff": 0.0},
                                     signature="serving_default")
    assert layout.publish_edge_version(base, "1000", files, manifest) == f"{base}/1000"
    # An interrupted publish: files, no manifest. The runtime does not look at it.
    tf.io.gfile.makedirs(f"{base}/2000")
    with tf.io.gfile.GFile(f"{base}/2000/{layout.FLOAT_MODEL}", "wb") as handle:
        handle.write(b"half a model")

    assert not os.path.exists(base.replace("ram://", "ram:/"))
    assert (layout.versions(base), layout.edge_versions(base)) == ([1000, 2000], [1000])
    assert layout.read_manifest(f"{base}/1000") == manifest
    with caplog.at_level("DEBUG", logger="tfxline"):
        model = runtime.load_newest(base)
    assert caplog.records == []
    assert model.version == 1000
    assert model.predict([{"x": 2.0}, {"x": 4.0}]).tolist() == [[4.0], [5.0]]
    # The same version again is left as it is.
    layout.publish_edge_version(base, "1000", {layout.FLOAT_MODEL: b"other"}, manifest)
    assert layout.read_bytes(f"{base}/1000/{layout.FLOAT_MODEL}") == tflite_model


# ---- What a watcher sees during a publish --------------------------------------------------------

class Watcher(threading.Thread):
    """Polls like a server does and records every state it finds, until stopped."""

    def __init__(self, look):
        super().__init__(daemon=True)
        self._look, self.states, self._done = look, [], threading.Event()

    def run(self):
        while not self._done.is_set():
            self.states.append(self._look())

    def __enter__(self):
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # interleave the watcher with the publisher as often as possible
        self.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        self.join()
        sys.setswitchinterval(self._switch)


def _files_under(directory):
    """Relative paths of the files under `directory`. ram:// matches children by name prefix: it
    lists a phantom `assets/.extra` beside `assets.extra`, so each file is checked, and it can drop
    names that are a prefix of another, so the tests' own file names all have the same length."""
    return {os.path.join(root[len(directory):].strip("/"), name)
            for root, _, names in tf.io.gfile.walk(directory) for name in names
            if tf.io.gfile.exists(os.path.join(root, name))}


def _same_content(local_dir, copy):
    return all(layout.read_bytes(os.path.join(copy, name)) == (Path(local_dir) / name).read_bytes()
               for name in _files_under(str(local_dir))) and _files_under(copy) == _files_under(str(local_dir))


@pytest.mark.parametrize("where", ["local", "ram"])
def test_a_watcher_sees_a_saved_model_version_only_once_it_is_complete(models, tmp_path, ram, where,
                                                                       quick_object_lock):
    model = tmp_path / "model"
    shutil.copytree(models[0], model)
    (model / "extras").mkdir()
    for index in range(300):  # enough files that the copy takes many watcher polls
        (model / "extras" / f"extra-{index:03d}").write_bytes(os.urandom(256))
    expected = _files_under(str(model))
    serving = str(tmp_path / "serving") if where == "local" else f"{ram}/serving"
    base = f"{serving}/half"

    def look():
        # TF Serving's view: the versions models.config names (read first: the directories read after
        # it can only be further along), numeric directories and their files.
        try:
            named = list(_entry(f"{serving}/models.config").model_version_policy.specific.versions)
        except (OSError, AttributeError):
            named = []
        return {version: _files_under(f"{base}/{version}") for version in layout.versions(base)}, named

    with Watcher(look) as watcher:
        assert release_state.push(str(model), base, now=1000.0) == "1000"
        time.sleep(0.05)
    assert watcher.states[-1] == ({1000: expected}, [1000])
    for directories, named in watcher.states:
        for version, files in directories.items():
            if where == "local" or "saved_model.pb" in files:
                assert files == expected
        for version in named:
            assert directories.get(version) == expected
    if where == "local":  # one rename: nothing or everything
        assert all(files == expected for directories, _ in watcher.states for files in directories.values())


@pytest.mark.parametrize("where", ["local", "ram"])
def test_a_watcher_sees_an_edge_version_only_with_all_its_files(tflite_model, tmp_path, ram, where):
    files, inputs = _edge_files(tflite_model, extra=300)
    manifest = layout.build_manifest("1000", "half", inputs, "y", files, {}, signature="serving_default")
    base = str(tmp_path / "edge" / "half") if where == "local" else f"{ram}/edge/half"

    def look():
        directories, found = layout.versions(base), {}  # directories first: a later look can only see more
        for version in layout.edge_versions(base):
            listed = layout.read_manifest(f"{base}/{version}")["files"]
            found[version] = all(layout.sha256(layout.read_bytes(f"{base}/{version}/{name}")) == entry["sha256"]
                                 for name, entry in listed.items())
        return found, directories

    with Watcher(look) as watcher:
        layout.publish_edge_version(base, "1000", files, manifest)
        time.sleep(0.05)
    assert watcher.states[-1] == ({1000: True}, [1000])
    assert all(all(found.values()) for found, _ in watcher.states)
    if where == "local":  # one rename: the directory comes with its manifest
        assert all(found for found, directories in watcher.states if directories)


@pytest.mark.parametrize("where", ["local", "ram"])
def test_a_push_that_fails_half_way_leaves_nothing_a_server_would_load(models, tmp_path, ram, where,
                                                                       quick_object_lock):
    model = tmp_path / "model"
    shutil.copytree(models[1], model)
    (model / "variables" / "zz-unreadable").symlink_to(tmp_path / "nowhere")  # copying it fails
    serving = str(tmp_path / "serving") if where == "local" else f"{ram}/serving"
    base = f"{serving}/half"
    release_state.push(str(models[0]), base, now=1000.0)
    config_before = layout.read_bytes(f"{serving}/models.config")
    with pytest.raises(OSError):
        release_state.push(str(model), base, now=1000.0)

    assert layout.read_bytes(f"{serving}/models.config") == config_before
    assert layout.saved_model_versions(base) == [1000]
    if where == "local":
        assert sorted(os.listdir(base)) == ["1000"]  # the staging directory is gone too
    else:
        # What an object store keeps: the files copied so far (the top directory's come first),
        # without saved_model.pb.
        assert layout.versions(base) == [1000, 1001]
        assert "fingerprint.pb" in tf.io.gfile.listdir(f"{base}/1001")
        assert "saved_model.pb" not in tf.io.gfile.listdir(f"{base}/1001")
    assert release_state.push(str(models[2]), base, now=1000.0) == ("1001" if where == "local" else "1002")


@pytest.mark.parametrize("where", ["local", "ram"])
def test_an_edge_publish_that_fails_half_way_leaves_no_manifest(tflite_model, tmp_path, ram, where):
    files, inputs = _edge_files(tflite_model)
    manifest = layout.build_manifest("1000", "half", inputs, "y", files, {}, signature="serving_default")
    base = str(tmp_path / "edge" / "half") if where == "local" else f"{ram}/edge/half"
    broken = {layout.FLOAT_MODEL: tflite_model, "zz-not-bytes": object(), layout.QUANTIZED_MODEL: tflite_model}
    with pytest.raises(TypeError):
        layout.publish_edge_version(base, "1000", broken, manifest)
    assert layout.edge_versions(base) == [] and runtime.load_newest(base) is None
    assert layout.versions(base) == ([] if where == "local" else [1000])
    # Published again whole, it is there.
    layout.publish_edge_version(base, "1000", files, manifest)
    assert runtime.load_newest(base).version == 1000


# ---- The release lock ---------------------------------------------------------------------------

RACER = """
import sys, time
from pathlib import Path
from serving import release_state
model, base, ready, go = sys.argv[1:5]
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.0002)
print(release_state.push(model, base, now=1000.0))
"""


def test_two_processes_pushing_at_once_get_distinct_versions(tmp_path):
    # Models with 8 MB of variables, so each copy takes long enough for the two to overlap.
    sources = []
    for offset in (2.0, 3.0):
        model = build_half_plus(tmp_path / f"model_{offset}", offset)
        (model / "assets.extra").mkdir(exist_ok=True)
        (model / "assets.extra" / "padding").write_bytes(os.urandom(8 << 20))
        sources.append(model)
    base = tmp_path / "serving" / "half"
    go = tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(model), str(base), str(tmp_path / f"ready-{index}"),
                                str(go)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for index, model in enumerate(sources)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{index}").exists() for index in range(2)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    results = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err for _, err in results]
    versions = [int(out.strip()) for out, _ in results]
    assert sorted(versions) == [1000, 1001]
    for version, model in zip(versions, sources):
        assert _same_content(model, str(base / str(version)))

    serving = tmp_path / "serving"
    history = json.loads((serving / "release_history.json").read_text())["half"]
    pushed = [event["version"] for event in history["events"]]
    assert sorted(pushed) == [1000, 1001]
    first, second = pushed
    for name in ("models.config", "models.local.config"):
        entry = _entry(str(serving / name))
        assert dict(entry.version_labels) == {"stable": first, "canary": second}
        assert list(entry.model_version_policy.specific.versions) == [1000, 1001]
    assert history["stable_versions"] == [first]
    assert sorted(os.listdir(base)) == ["1000", "1001"]  # no staging directory left


def test_the_object_store_lock_makes_a_second_writer_wait(ram, quick_object_lock):
    serving = f"{ram}/serving"
    order, inside = [], threading.Event()

    def first():
        with layout.release_lock(serving):
            order.append("first in")
            inside.set()
            time.sleep(0.3)
            order.append("first out")

    def second():
        inside.wait()
        with layout.release_lock(serving):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert order == ["first in", "first out", "second in"]
    assert not layout.exists(f"{serving}/{layout.RELEASE_LOCK}")


def test_an_expired_object_lock_is_taken_over_and_a_live_one_waited_for(ram, quick_object_lock, monkeypatch):
    serving = f"{ram}/serving"
    lock = f"{serving}/{layout.RELEASE_LOCK}"
    layout.write_json(lock, {"owner": "gone-host:1:0", "expires": time.time() - 1})
    with layout.release_lock(serving):
        assert json.loads(layout.read_text(lock))["owner"] != "gone-host:1:0"

    layout.write_json(lock, {"owner": "busy-host:2:0", "expires": time.time() + 0.5})
    started = time.monotonic()
    with layout.release_lock(serving):
        assert time.monotonic() - started >= 0.4
    monkeypatch.setattr(layout, "LOCK_EXPIRY_SECONDS", 0.2)
    layout.write_json(lock, {"owner": "busy-host:2:0", "expires": time.time() + 3600})
    with pytest.raises(layout.ReleaseLockTimeout, match="held by busy-host:2:0; wait for it to finish"):
        with layout.release_lock(serving):
            pass


# ---- The installed commands ---------------------------------------------------------------------

def test_the_installed_release_command_on_a_published_serving_directory(models, tmp_path):
    config = write_config(tmp_path / "config", name="half", output={"root": str(tmp_path / "out")})
    serving = tmp_path / "out" / "serving"
    for model in models:
        release_state.push(str(model), str(serving / "half"), now=1000.0)

    def run(*args):
        return subprocess.run([TFXLINE, "release", *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)

    status = run("status", "--config", str(config))  # the config's output and name
    assert status.returncode == 0, status.stderr
    assert f"half in {serving}/models.config\n" in status.stdout
    assert "  stable    1000\n  canary    1002\n" in status.stdout and "  on disk   1000, 1001, 1002\n" in status.stdout
    canary = run("canary", "1001", "--serving-dir", str(serving), "--model-name", "half")
    assert canary.returncode == 0 and "canary 1001" in canary.stdout, canary.stderr
    promote = run("promote", "--serving_dir", str(serving), "--model_name", "half")  # the snake_case spelling
    assert promote.returncode == 0 and "promote 1001: stable 1001" in promote.stdout, promote.stderr
    rollback = run("rollback", "--config", str(config))
    assert rollback.returncode == 0 and "rollback 1000: stable 1000" in rollback.stdout, rollback.stderr
    entry = _entry(str(serving / "models.config"))
    assert dict(entry.version_labels) == {"stable": 1000}
    assert [event["action"] for event in json.loads((serving / "release_history.json").read_text())["half"][
        "events"]] == ["push", "push", "push", "canary", "promote", "rollback"]

    # Without --config the shipped taxi config's defaults apply: tfxline_output/serving, model taxi.
    default = run("status")
    assert default.returncode == 1 and default.stderr == (
        "tfxline release: no models.config in tfxline_output/serving; push a model first (tfxline run) or pass "
        "--serving-dir or --config\n")
    bad = write_config(tmp_path / "bad", training={"epochs": 0})
    refused = run("status", "--config", str(bad))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("tfxline release: config error:") and "training.epochs" in refused.stderr


def test_the_installed_edge_command_takes_its_defaults_from_the_config(tflite_model, tmp_path):
    config = write_config(tmp_path / "config", name="half", output={"root": str(tmp_path / "out")})
    files, inputs = _edge_files(tflite_model)
    for version in ("1000", "1001"):
        layout.publish_edge_version(str(tmp_path / "out" / "edge" / "half"), version, files,
                                    layout.build_manifest(version, "half", inputs, "y", files, {},
                                                          signature="serving_default"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": 2.0}\n{"x": 0}\n')
    for flags in (["--config", str(config)], ["--edge_dir", str(tmp_path / "out" / "edge"), "--model_name", "half"]):
        result = subprocess.run([TFXLINE, "edge", "predict", str(rows), *flags], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        assert [json.loads(line) for line in result.stdout.splitlines()] == [{"row": 0, "y": [4.0]},
                                                                           {"row": 1, "y": [3.0]}]
        assert "with version 1001" in result.stderr
